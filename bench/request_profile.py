"""Per-request cost of the provider's two hottest reads, profiled in-process: microseconds per
``GET /api/services/nonce`` and ``GET /api/services/compute`` (status of a finished job) through
the real WSGI app, next to a one-route bare Flask app, and a cProfile breakdown by component.

Prints figures only (no pass/fail). Run: ``.venv/bin/python bench/request_profile.py [--n 5000]
[--top 25]``. Needs neither Docker nor a chain: the app is built as ``tidewater serve`` builds
it (``create_app``, JSON access log on, Prometheus in multiprocess mode), on a temporary SQLite
store holding one finished job run by the engine's ``FakeBackend``; only the chain id is faked.
Each request is one call of the WSGI callable with a prebuilt environ (no sockets), so the
figures are the server-independent cost that gunicorn adds its own share to.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import logging
import os
import pstats
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.summary import record

CONSUMER = "0x" + "ab" * 20
PROVIDER_KEY = "0x5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a"
#: Any address holding code on the faked chain (environments need a fee token).
FEE_TOKEN = "0x" + "0c" * 20

#: cProfile's files grouped into what a reader of the breakdown cares about (first match wins).
COMPONENTS: tuple[tuple[str, tuple[str, ...]], ...] = (
    (
        "request accounting middleware (request id, headers, queue)",
        ("provider/request_accounting.py",),
    ),
    ("tidewater access log (provider/logs.py + logging)", ("provider/logs.py", "/logging/")),
    ("prometheus (provider/metrics.py + client)", ("provider/metrics.py", "prometheus")),
    ("json_limits before_request", ("provider/json_limits.py",)),
    ("sqlalchemy (compile, cache key, execute, rows)", ("sqlalchemy",)),
    ("sqlite3 driver", ("sqlite3", "_sqlite3")),
    (
        "tidewater routes, stores, models",
        ("provider/", "operator_engine/", "datastore/", "tidewater/"),
    ),
    ("flask + werkzeug (routing, request, response)", ("flask", "werkzeug")),
    ("json encoding", ("json/",)),
)


def _component(filename: str) -> str:
    for name, needles in COMPONENTS:
        if any(needle in filename for needle in needles):
            return name
    return "other (stdlib, builtins)"


def _environ(path: str, query: str) -> dict[str, Any]:
    from werkzeug.test import EnvironBuilder

    builder = EnvironBuilder(
        path=path, query_string=query, environ_base={"REMOTE_ADDR": "127.0.0.1"}
    )
    try:
        return builder.get_environ()
    finally:
        builder.close()


def _call(app: Callable[..., Iterable[bytes]], environ: dict[str, Any]) -> bytes:
    status: list[str] = []

    def start_response(code: str, _headers: Any, _exc: Any = None) -> None:
        status.append(code)

    body = app(dict(environ), start_response)
    try:
        data = b"".join(body)
    finally:
        close = getattr(body, "close", None)
        if close is not None:
            close()
    if not status[0].startswith("200"):
        raise RuntimeError(f"{environ['PATH_INFO']} -> {status[0]}: {data[:200]!r}")
    return data


def _time(cases: list[tuple[str, Any, dict[str, Any]]], n: int) -> dict[str, tuple[float, float]]:
    """Per case, (CPU, wall) microseconds per request: medians of 5 batches of ``n // 5``, the
    cases' batches interleaved so a burst of load elsewhere hits them alike. CPU is the
    process's (every thread's: the log writer's too); on a shared machine it moves far less
    than wall time, which includes the time other processes held the cores."""
    batches: dict[str, list[tuple[float, float]]] = {name: [] for name, _app, _env in cases}
    size = n // 5
    for _ in range(5):
        for name, app, environ in cases:
            cpu, wall = time.process_time(), time.perf_counter()
            for _ in range(size):
                _call(app, environ)
            batches[name].append(
                (
                    (time.process_time() - cpu) / size * 1e6,
                    (time.perf_counter() - wall) / size * 1e6,
                )
            )
    return {
        name: (statistics.median(c for c, _w in found), statistics.median(w for _c, w in found))
        for name, found in batches.items()
    }


def _profile(app: Any, environ: dict[str, Any], n: int) -> pstats.Stats:
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(n):
        _call(app, environ)
    profiler.disable()
    return pstats.Stats(profiler)


def _breakdown(stats: pstats.Stats, n: int) -> dict[str, float]:
    """Own time (tottime) per component, microseconds per request (under the profiler)."""
    totals: dict[str, float] = defaultdict(float)
    for (filename, _line, _func), (_cc, _nc, tottime, _ct, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        totals[_component(filename)] += tottime / n * 1e6
    return dict(sorted(totals.items(), key=lambda item: -item[1]))


def _signature_check_us(n: int) -> float:
    """CPU microseconds per signed-request check (recover the signer of a computeResult-style
    text and compare), median of 5 batches; the signature is made once, outside the clock."""
    from eth_account import Account

    from provider.request_auth import result_text, signer_matches
    from provider.signatures import sign_text

    account = Account.from_key(PROVIDER_KEY)
    text = result_text(account.address, "ab" * 32, 0, "1700000000123")
    signature = sign_text(PROVIDER_KEY, text)
    batches = []
    for _ in range(5):
        start = time.process_time()
        for _ in range(n // 5):
            if not signer_matches(account.address, signature, text):
                raise RuntimeError("the signature check failed")
        batches.append((time.process_time() - start) / (n // 5) * 1e6)
    return sorted(batches)[2]


def _bare_app() -> Any:
    from flask import Flask, jsonify

    bare = Flask("bare")

    @bare.get("/ping")
    def ping() -> Any:
        return jsonify({"nonce": "1"})

    return bare


def _provider_app(folder: Path) -> tuple[Any, str]:
    """The app as ``tidewater serve`` builds it, and the id of a finished job of CONSUMER."""
    from operator_engine.backends.fake import FakeBackend
    from operator_engine.models import AlgorithmInput, DatasetInput, JobRequest
    from provider.app import create_app
    from provider.logs import configure_logging
    from tidewater.engine_config import build_engine
    from tidewater.settings import Settings
    from tidewater.stack import file_server

    envs = folder / "envs.json"
    envs.write_text(
        json.dumps(
            [
                {
                    "id": "free",
                    "cpuNumber": 1,
                    "ramGB": 1,
                    "diskGB": 1,
                    "maxJobs": 1,
                    "feeToken": FEE_TOKEN,
                }
            ]
        )
    )
    settings = Settings.from_env(
        {
            "PROVIDER_PRIVATE_KEY": PROVIDER_KEY,
            "TIDEWATER_DATA_DIR": str(folder / "data"),
            "TIDEWATER_ENVIRONMENTS": str(envs),
            "ALLOW_NON_PUBLIC_IP": "true",
            "NETWORK_URL": "http://127.0.0.1:9",
            "TIDEWATER_PULL_IMAGES": "false",
        }
    )

    def algorithm(_spec: Any, dirs: dict[str, Path], _killed: Any) -> tuple[int, bool, bytes]:
        (dirs["outputs"] / "summary.txt").write_bytes(b"rows: 2\n")
        return 0, False, b"done\n"

    engine = build_engine(settings, backend=FakeBackend(algorithm))
    with file_server({"/data.csv": b"a,b\n1,2\n"}) as files:
        job = engine.submit(
            JobRequest(
                owner=CONSUMER,
                environment="free",
                datasets=[
                    DatasetInput(
                        "did:op:" + "be" * 32,
                        {},
                        "svc",
                        [{"type": "url", "url": files + "/data.csv"}],
                    )
                ],
                algorithm=AlgorithmInput(
                    container={
                        "image": "tidewater/fake",
                        "tag": "1",
                        "entrypoint": "python3 $ALGO",
                    },
                    rawcode="print(1)",
                ),
            )
        )
        engine.run_until_idle(timeout=60)
    if engine.get(job.job_id).status != 70:  # type: ignore[union-attr]
        raise RuntimeError("the profiling job did not finish")
    configure_logging("INFO")
    handler = logging.getLogger().handlers[0]
    handler.target.setStream(open(os.devnull, "w"))  # type: ignore[attr-defined]
    # Only the chain id is read, and the fee-token check asks whether contracts hold code.
    web3 = SimpleNamespace(eth=SimpleNamespace(chain_id=8996, get_code=lambda _a: b"\x60\x80"))
    return create_app(settings, engine=engine, web3=web3), job.job_id


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=5000, help="requests per timing (5000)")
    parser.add_argument("--top", type=int, default=0, help="also print the N costliest functions")
    parser.add_argument("--summary", type=Path, help="append the issue-16 row to this file")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="tidewater-profile-") as tmp:
        folder = Path(tmp)
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(folder / "metrics")  # as `tidewater serve`
        (folder / "metrics").mkdir()
        app, job_id = _provider_app(folder)
        bare = _bare_app()
        cases = [
            ("bare Flask GET /ping", bare, _environ("/ping", "")),
            ("GET nonce", app, _environ("/api/services/nonce", f"userAddress={CONSUMER}")),
            (
                "GET compute (status)",
                app,
                _environ("/api/services/compute", f"consumerAddress={CONSUMER}&jobId={job_id}"),
            ),
        ]
        for _name, wsgi, environ in cases:  # warm every cache first
            for _ in range(200):
                _call(wsgi, environ)
        timings = _time(cases, args.n)
        profiles = [(name, _profile(wsgi, environ, args.n)) for name, wsgi, environ in cases[1:]]
        signature_us = _signature_check_us(max(args.n // 5, 500))

    print(
        f"in-process WSGI calls, median of 5 interleaved batches of {args.n // 5}; load average "
        f"{os.getloadavg()[0]:.2f} ({os.cpu_count()} CPUs, shared); CPU = this process's CPU "
        f"time (all threads), wall = elapsed"
    )
    bare_us, _bare_wall = timings[cases[0][0]]
    for name, (us, wall) in timings.items():
        ratio = "" if name == cases[0][0] else f"  {us / bare_us:.2f}x bare's CPU"
        print(
            f"  {name:<24}{us:>8.0f} us CPU  {wall:>8.0f} us wall/request  "
            f"{1e6 / us:>8,.0f} req/s per core{ratio}"
        )
        if name != cases[0][0]:
            record(
                args.summary,
                f"`{name}` in-process, app cost vs bare Flask",
                f"{us:.0f} us CPU/request",
                f"{bare_us:.0f} us",
                us / bare_us,
                "(the app's own share; see the gunicorn rows)",
            )
    print(
        f"  {'signed request check':<24}{signature_us:>8.0f} us CPU/check  "
        f"{1e6 / signature_us:>8,.0f} checks/s per core (recover signer, coincurve); "
        f"{signature_us / bare_us:.2f}x a bare request"
    )
    record(
        args.summary,
        "signed request check (recover the signer, coincurve)",
        f"{signature_us:.0f} us, {1e6 / signature_us:,.0f}/s per core",
        f"bare Flask request in-process: {bare_us:.0f} us",
        signature_us / bare_us,
        "keep (73 us on a quiet machine)",
    )
    for name, stats in profiles:
        parts = _breakdown(stats, args.n)
        total = sum(parts.values())
        print(
            f"cProfile breakdown, {name} (own time per request under the profiler, on the "
            f"request's thread: access lines and metrics are made on the accountant's, "
            f"{total:.0f} us in all):"
        )
        for component, us in parts.items():
            print(f"  {component:<52}{us:>7.0f} us  {us / total:>4.0%}")
        if args.top:
            out = io.StringIO()
            stats.stream = out  # type: ignore[attr-defined]
            stats.sort_stats("tottime").print_stats(args.top)
            print(out.getvalue())


if __name__ == "__main__":
    main()
