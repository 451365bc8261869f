"""Stage 50: what may leave the job. Regular files under ``outputs/`` only (walked without
following links); symlinks, devices, FIFOs, sockets and unprintable names are dropped and
reported in the publish log; the total is checked against the environment's egress policy."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from operator_engine.context import JobContext, Kind, Outcome


def _printable(name: str) -> bool:
    return name.isprintable() and "\\" not in name


def collect_outputs(root: Path) -> tuple[list[tuple[str, int]], list[str]]:
    """([(relative name, size)], [dropped entries with why]) of ``root``, never following links."""
    kept: list[tuple[str, int]] = []
    dropped: list[str] = []
    stack: list[tuple[Path, str]] = [(root, "")]
    while stack:
        folder, prefix = stack.pop()
        with os.scandir(folder) as it:
            entries = sorted(it, key=lambda e: e.name)
        for entry in entries:
            rel = prefix + entry.name
            st = entry.stat(follow_symlinks=False)
            if not _printable(rel):
                dropped.append(f"{rel!r}: unprintable name")
            elif stat.S_ISLNK(st.st_mode):
                dropped.append(f"{rel}: symbolic link (to {os.readlink(entry.path)!r})")
            elif stat.S_ISDIR(st.st_mode):
                stack.append((Path(entry.path), rel + "/"))
            elif stat.S_ISREG(st.st_mode):
                kept.append((rel, st.st_size))
            else:
                dropped.append(f"{rel}: not a regular file")
    kept.sort()
    return kept, dropped


def filter_outputs(ctx: JobContext) -> Outcome:
    """Keep the publishable outputs in ``ctx.state['outputs']``; 42 when over the policy."""
    try:
        kept, dropped = collect_outputs(ctx.folder.outputs)
    except OSError as exc:
        return Outcome(Kind.PUBLISH_FAILED, f"outputs could not be read: {exc.strerror}")
    for line in dropped:
        ctx.publish_log(f"not published: {line}")
    total = sum(size for _name, size in kept)
    policy = ctx.env.egress
    ctx.state["outputs"] = kept
    if total > policy.max_bytes or len(kept) > policy.max_files:
        return Outcome(
            Kind.EGRESS_EXCEEDED,
            f"outputs are {total} bytes in {len(kept)} files; environment {ctx.env.id} allows "
            f"at most {policy.max_bytes} bytes in {policy.max_files} files",
        )
    return Outcome.ok()
