"""Provider throughput: requests/s and p50/p99 latency of ``tidewater serve`` versus a bare Flask
app under gunicorn with the same settings, in the same run.

Prints figures only (no pass/fail). Run: ``.venv/bin/python bench/provider_throughput.py
[--duration 10] [--rounds 3] [--connections 16] [--wrk-threads 1] [--workers-proc 1]
[--threads 8] [--log-level INFO]``. Needs ``wrk`` (``apt-get install wrk``), Docker and ganache.

What runs: ganache with the Ocean V4 contracts (the provider reads the chain id at start), one
real busybox job run to completion on the provider's SQLite store (so the status lookup finds a
finished job with results), ``tidewater serve --no-engine`` (gunicorn gthread), and a one-route
Flask app under gunicorn with exactly the options ``tidewater serve`` uses
(``tidewater.commands.serve.gunicorn_options``). ``wrk --latency`` loads, one after the other and
``--rounds`` times over (medians reported): the bare ``/ping``, ``GET
/api/services/nonce?userAddress=`` and ``GET /api/services/compute? consumerAddress=&jobId=`` (job
status). Everything listens on 127.0.0.1 and stops on exit. Targets (issues): >= 1,000 req/s and
p99 < 20 ms on 2 cores; >= 0.6x the bare app's req/s and p99 <= 2x its p99.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from contextlib import ExitStack
from pathlib import Path
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import requests

from bench._common import (
    WrkResult,
    bare_gunicorn,
    context_switches,
    cpu_seconds,
    require_wrk,
    run_wrk,
    serving_tree,
    sigterm_as_ctrl_c,
)
from bench._served import served_provider
from bench.summary import record

TARGET_RPS = 1000.0
TARGET_P99_MS = 20.0
ENV_ID = "bench-throughput"


def _note(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _check(url: str, expect: str) -> None:
    """One request before loading: the endpoint answers 200 with what the bench expects."""
    reply = requests.get(url, timeout=10)
    if reply.status_code != 200 or expect not in reply.text:
        raise RuntimeError(f"GET {url} -> {reply.status_code}: {reply.text[:300]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run (10)")
    parser.add_argument("--connections", type=int, default=16, help="wrk connections (16)")
    parser.add_argument("--wrk-threads", type=int, default=1, help="wrk threads (1)")
    parser.add_argument(
        "--rounds", type=int, default=3, help="wrk runs per endpoint, alternating (3)"
    )
    parser.add_argument("--warmup", type=int, default=2, help="seconds of unmeasured load (2)")
    parser.add_argument("--workers-proc", type=int, default=1, help="gunicorn processes (1)")
    parser.add_argument("--threads", type=int, default=8, help="threads per process (8)")
    parser.add_argument(
        "--log-level", default="INFO", help="TIDEWATER_LOG_LEVEL of the provider (INFO)"
    )
    parser.add_argument("--summary", type=Path, help="append the issue-16 rows to this file")
    args = parser.parse_args()
    require_wrk()
    sigterm_as_ctrl_c()
    load = {"threads": args.wrk_threads, "connections": args.connections}

    with tempfile.TemporaryDirectory(prefix="tidewater-bench-") as tmp, ExitStack() as stack:
        folder = Path(tmp)
        served = served_provider(
            stack,
            folder,
            ENV_ID,
            workers_proc=args.workers_proc,
            threads=args.threads,
            log_level=args.log_level,
            note=_note,
        )
        bare = stack.enter_context(bare_gunicorn(folder, args.workers_proc, args.threads))
        endpoints = [
            ("bare Flask GET /ping", bare + "/ping", '"nonce"'),
            ("tidewater GET nonce", served.nonce_url, '"nonce"'),
            ("tidewater GET compute (status)", served.status_url, served.job_id),
        ]
        for _name, url, expect in endpoints:
            _check(url, expect)
            if args.warmup > 0:
                run_wrk(url, duration=args.warmup, **load)
        # Rounds alternate the endpoints, so a burst of load from elsewhere on a shared
        # machine hits every endpoint alike; each figure is the median over the rounds.
        # The server's own CPU per request too (its processes' user + system time over the
        # run / requests answered): unlike req/s it does not move with what else the shared
        # cores run.
        trees = {url: serving_tree(urlsplit(url).port or 0) for _name, url, _expect in endpoints}
        runs: dict[str, list[WrkResult]] = {name: [] for name, _url, _expect in endpoints}
        cpu: dict[str, list[float]] = {name: [] for name, _url, _expect in endpoints}
        switches: dict[str, list[float]] = {name: [] for name, _url, _expect in endpoints}
        for n in range(args.rounds):
            for name, url, _expect in endpoints:
                _note(f"round {n + 1}/{args.rounds}, wrk {args.duration}s: {name}")
                before = cpu_seconds(trees[url]), context_switches(trees[url])
                result = run_wrk(url, duration=args.duration, **load)
                runs[name].append(result)
                cpu[name].append((cpu_seconds(trees[url]) - before[0]) / result.requests * 1e6)
                switches[name].append((context_switches(trees[url]) - before[1]) / result.requests)
        results = [
            (name, _median(found), statistics.median(cpu[name]), statistics.median(switches[name]))
            for name, found in runs.items()
        ]

    _report(args, results)


def _median(runs: list[WrkResult]) -> WrkResult:
    """Median req/s, p50 and p99 over ``runs`` (each taken on its own); requests summed."""
    return WrkResult(
        statistics.median(r.rps for r in runs),
        statistics.median(r.p50_ms for r in runs),
        statistics.median(r.p99_ms for r in runs),
        sum(r.requests for r in runs),
        "; ".join(r.errors for r in runs if r.errors),
    )


def _report(args: argparse.Namespace, results: list[tuple[str, WrkResult, float, float]]) -> None:
    print(
        f"gunicorn gthread, {args.workers_proc} process(es) x {args.threads} threads; "
        f"wrk -t{args.wrk_threads} -c{args.connections} -d{args.duration}s --latency, "
        f"median of {args.rounds} alternating rounds; "
        f"provider log level {args.log_level}; {os.cpu_count()} CPUs, "
        f"load average {os.getloadavg()[0]:.2f} at the end"
    )
    print(f"target (issue): >= {TARGET_RPS:,.0f} req/s and p99 < {TARGET_P99_MS:.0f} ms on 2 cores")
    header = (
        f"{'endpoint':<32}{'req/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'CPU us/req':>12}"
        f"{'switches/req':>14}"
    )
    print(header + f"{'req/s vs bare':>15}{'p99 vs bare':>13}{'bare CPU/ CPU':>15}")
    _bare_name, bare, bare_cpu, bare_switches = results[0]
    for name, result, cpu_us, switched in results:
        line = (
            f"{name:<32}{result.rps:>10,.0f}{result.p50_ms:>9.2f}{result.p99_ms:>9.2f}"
            f"{cpu_us:>12.0f}{switched:>14.1f}"
        )
        if result is not bare:
            line += (
                f"{result.rps / bare.rps:>15.2f}{result.p99_ms / bare.p99_ms:>13.2f}"
                f"{bare_cpu / cpu_us:>15.2f}"
            )
        print(line)
        if result.errors:
            print(f"  ! {name}: {result.errors} (of {result.requests} requests)")
        if result is not bare:
            record(
                args.summary,
                f"`{name.removeprefix('tidewater ')}` vs bare Flask, gunicorn "
                f"{args.workers_proc}x{args.threads}",
                f"{result.rps:,.0f} req/s, p99 {result.p99_ms:.1f} ms, {cpu_us:.0f} us CPU/req, "
                f"{switched:.1f} switches/req",
                f"{bare.rps:,.0f} req/s, p99 {bare.p99_ms:.1f} ms, {bare_cpu:.0f} us CPU/req, "
                f"{bare_switches:.1f} switches/req",
                result.rps / bare.rps,
                f">= 0.6x; p99 {result.p99_ms / bare.p99_ms:.2f}x bare (<= 2x); "
                f"CPU/req ratio {bare_cpu / cpu_us:.2f}",
            )


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit("interrupted: everything the benchmark started is stopped")
