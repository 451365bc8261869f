"""A :class:`~operator_engine.backends.base.JobWorkspace` kept in a folder of the engine's data
dir (``<data_dir>/jobs/<job_id>``, the docs/protocol.md §10 layout of
:class:`~operator_engine.workspace.JobFolder`): the Docker backend bind-mounts its volumes, the
fake backend hands them to a Python function. The run's disk share is a
:mod:`~operator_engine.backends.quota` area (a loop-mounted ext4 image or a polled folder).
"""

from __future__ import annotations

import hashlib
import os
import stat
import tempfile
from collections.abc import Iterable
from pathlib import Path

from operator_engine.backends import quota
from operator_engine.backends.base import BackendError, StoredFile, Volume
from operator_engine.workspace import JobFolder, append_log, check_name

_STAGED = ("inputs", "algorithm", "ddos")


def hash_file(path: Path) -> tuple[int, str]:
    """(size, sha256 hex) of a regular file, refusing a symlink."""
    digest = hashlib.sha256()
    size = 0
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    with os.fdopen(fd, "rb") as handle:
        while chunk := handle.read(1024 * 1024):
            digest.update(chunk)
            size += len(chunk)
    return size, digest.hexdigest()


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


def _volume_paths(folder: JobFolder, outputs: Path, logs: Path) -> dict[Volume, Path]:
    return {
        "inputs": folder.inputs,
        "algorithm": folder.transformations,
        "ddos": folder.ddos,
        "outputs": outputs,
        "logs": logs,
    }


def area_paths(area: quota.WritableArea) -> dict[Volume, Path]:
    """The host folder of each volume during the run of ``area``."""
    return _volume_paths(area.folder, area.outputs, area.logs)


class FolderWorkspace:
    """One job's workspace in its host folder; ``disk_quota`` (``loop``, ``poll``, ``auto``:
    ``TIDEWATER_DISK_QUOTA``) says how :meth:`open_run` holds the disk share."""

    def __init__(self, folder: JobFolder, disk_quota: str = "poll") -> None:
        self.folder = folder
        self.job_id = folder.root.name
        self.disk_quota = disk_quota

    def path(self, volume: Volume) -> Path:
        """The host folder of ``volume`` (for the backends that mount or hand it over)."""
        return _volume_paths(self.folder, self.folder.outputs, self.folder.logs)[volume]

    def _file(self, volume: Volume, name: str) -> Path:
        return self.path(volume).joinpath(*(check_name(part) for part in name.split("/")))

    def exists(self) -> bool:
        return self.folder.exists()

    def create(self) -> None:
        self.folder.create()

    def append_log(self, name: str, text: str) -> None:
        append_log(self.folder.log(check_name(name)), text)

    def stage(
        self, volume: Volume, name: str, chunks: Iterable[bytes], *, executable: bool = False
    ) -> tuple[int, str]:
        if volume not in _STAGED:
            raise ValueError(f"{volume} is not an input volume")
        dest = self._file(volume, name)
        for parent in reversed(dest.relative_to(self.path(volume)).parents[:-1]):
            (self.path(volume) / parent).mkdir(mode=0o755, exist_ok=True)
        digest = hashlib.sha256()
        size = 0
        fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=".stage-")
        tmp = Path(tmp_name)
        try:
            with os.fdopen(fd, "wb") as handle:
                for chunk in chunks:
                    handle.write(chunk)
                    digest.update(chunk)
                    size += len(chunk)
            os.chmod(tmp, 0o755 if executable else 0o644)
            tmp.replace(dest)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return size, digest.hexdigest()

    def input_digests(self, folder: str) -> list[str]:
        root = self._file("inputs", folder)
        if root.is_symlink() or not root.is_dir():
            return []
        found = sorted(p for p in root.rglob("*") if p.is_file() and not p.is_symlink())
        return [hash_file(p)[1] for p in found]

    def open_run(self, budget: int, max_entries: int) -> quota.WritableArea:
        try:
            # a loop image is made in a thread while the backend creates the container
            return quota.prepare(self.folder, budget, max_entries, self.disk_quota, background=True)
        except quota.QuotaError as exc:
            raise BackendError(str(exc)) from exc

    def settle(self) -> None:
        quota.settle(self.folder)

    def outputs(self) -> tuple[list[tuple[str, int]], list[str]]:
        return collect_outputs(self.folder.outputs)

    def result(self, volume: Volume, name: str) -> StoredFile:
        if volume not in ("outputs", "logs"):
            raise ValueError(f"{volume} holds no results")
        path = self._file(volume, name)
        size, sha = hash_file(path)
        return StoredFile(path.relative_to(self.folder.root).as_posix(), size, sha)

    def put_result(self, name: str, data: bytes) -> StoredFile:
        path = self.folder.root / check_name(name)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        return StoredFile(name, len(data), hashlib.sha256(data).hexdigest())

    def remove_inputs(self) -> None:
        self.folder.remove_inputs()

    def remove(self) -> None:
        self.folder.remove()


class FolderBackend:
    """What the Docker and fake backends share: once bound to an engine, each job's workspace
    is its folder in that engine's data dir."""

    platform: str
    disk_quota: str
    scope: str | None = None
    data_dir: Path | None = None

    def bind(self, *, scope: str, data_dir: Path) -> None:
        if self.scope is None:
            self.scope = scope
        self.data_dir = data_dir

    def workspace(self, job_id: str) -> FolderWorkspace:
        if self.data_dir is None:
            raise BackendError(f"the {self.platform} backend is not bound to an engine's data dir")
        return FolderWorkspace(JobFolder.of(self.data_dir, job_id), self.disk_quota)
