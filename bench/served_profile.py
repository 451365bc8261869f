"""Where a loaded gunicorn worker's interpreter time goes: py-spy samples of the thread holding
the GIL, by component, for ``GET nonce`` and ``GET compute`` (status) under ``wrk``.

Prints figures only (no pass/fail). Run: ``.venv/bin/python bench/served_profile.py
[--py-spy PATH] [--duration 10] [--rate 250] [--threads 8]``. Needs ``py-spy`` (``pip install
py-spy``; not a project dependency), ``wrk``, Docker and ganache. It starts what
``bench/provider_throughput.py`` starts (ganache, one real busybox job, ``tidewater serve
--no-engine`` with 1 process), loads each endpoint with ``wrk -t1 -c16`` and records the worker
with ``py-spy record --gil --nonblocking`` meanwhile; it also counts the worker's CPU time and
context switches per request over each run (``/proc``). Under one GIL per process the samples
that hold it are what limits requests per second; the breakdown says which code holds it
(each sample counted once, by its innermost frame: its own time).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import threading
from collections import Counter
from contextlib import ExitStack
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import (
    WrkResult,
    context_switches,
    cpu_seconds,
    require_wrk,
    run_wrk,
    server_processes,
    sigterm_as_ctrl_c,
)
from bench._served import served_provider

#: (component, path fragments of the innermost frame's file), first match wins.
COMPONENTS: tuple[tuple[str, tuple[str, ...]], ...] = (
    (
        "access log and metrics (off the request thread now)",
        (
            "provider/request_accounting.py",
            "provider/logs.py",
            "provider/metrics.py",
            "/logging/",
            "prometheus_client",
        ),
    ),
    ("SQLite reads (pool, cursor, execute, rows)", ("datastore/prepared.py", "sqlalchemy/")),
    ("routes, stores and models", ("provider/", "datastore/", "operator_engine/", "tidewater/")),
    ("Flask and werkzeug", ("flask/", "werkzeug/", "blinker/")),
    ("JSON encoding", ("json/",)),
    (
        "gunicorn (parse, write, worker loop)",
        (
            "gunicorn/",
            "concurrent/futures",
            "selectors.py",
            "ipaddress.py",
            "threading.py",
            "queue.py",
        ),
    ),
)


def component(frame: str) -> str:
    """The component of a py-spy frame ``function (path:line)``.

    >>> component("status (provider/routes/jobs.py:62)")
    'routes, stores and models'
    >>> component("write (gunicorn/util.py:348)")
    'gunicorn (parse, write, worker loop)'
    """
    for name, needles in COMPONENTS:
        if any(needle in frame for needle in needles):
            return name
    return "other (stdlib, builtins)"


def breakdown(raw: str) -> tuple[Counter[str], int]:
    """Samples per component from py-spy's ``--format raw`` output (folded stacks)."""
    counts: Counter[str] = Counter()
    total = 0
    for line in raw.splitlines():
        stack, _, number = line.rpartition(" ")
        if not stack or not number.isdigit():
            continue
        leaf = stack.split(";")[-1]
        counts[component(leaf)] += int(number)
        total += int(number)
    return counts, total


def _load(url: str, duration: int, into: list[WrkResult]) -> None:
    into.append(run_wrk(url, threads=1, connections=16, duration=duration))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--py-spy", default=shutil.which("py-spy") or "py-spy")
    parser.add_argument("--duration", type=int, default=10, help="seconds recorded (10)")
    parser.add_argument("--rate", type=int, default=250, help="samples per second (250)")
    parser.add_argument("--threads", type=int, default=8, help="gunicorn threads (8)")
    args = parser.parse_args()
    if not Path(args.py_spy).exists() and not shutil.which(args.py_spy):
        sys.exit("py-spy not found: pip install py-spy, or pass --py-spy PATH")
    require_wrk()
    sigterm_as_ctrl_c()
    with tempfile.TemporaryDirectory(prefix="tidewater-bench-") as tmp, ExitStack() as stack:
        folder = Path(tmp)
        served = served_provider(
            stack, folder, "bench-profile", workers_proc=1, threads=args.threads
        )
        provider = served.url
        port = int(provider.rsplit(":", 1)[1])
        worker = server_processes(port)[-1]
        endpoints = {"GET nonce": served.nonce_url, "GET compute (status)": served.status_url}
        for name, url in endpoints.items():
            run_wrk(url, threads=1, connections=16, duration=2)  # warm up
            results: list[WrkResult] = []
            load = threading.Thread(
                target=_load, args=(url, args.duration + 3, results), name="wrk"
            )
            before = context_switches([worker]), cpu_seconds([worker])
            load.start()
            out = folder / "profile.txt"
            subprocess.run(
                [
                    args.py_spy,
                    "record",
                    "--pid",
                    str(worker),
                    "--gil",
                    "--nonblocking",
                    "--duration",
                    str(args.duration),
                    "--rate",
                    str(args.rate),
                    "--format",
                    "raw",
                    "--output",
                    str(out),
                ],
                check=True,
                capture_output=True,
            )
            load.join()
            requests = results[0].requests
            switches = (context_switches([worker]) - before[0]) / requests
            cpu_us = (cpu_seconds([worker]) - before[1]) / requests * 1e6
            counts, total = breakdown(out.read_text())
            print(
                f"{name}: {results[0].rps:,.0f} req/s, worker CPU {cpu_us:.0f} us/request, "
                f"{switches:.1f} context switches/request (1 process x {args.threads} threads); "
                f"{total} samples holding the GIL:"
            )
            for part, n in counts.most_common():
                print(f"  {part:<55}{100 * n / total:>6.1f} %")


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit("interrupted: everything the benchmark started is stopped")
