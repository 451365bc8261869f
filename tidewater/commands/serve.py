"""``tidewater serve``: run the provider API under gunicorn, with the job engine inside.

Process model: gunicorn's master forks ``--workers-proc`` worker processes (default 1), each
running the Flask app with gthread threads (``--threads``). Each worker builds its own app after
the fork (database pools and Docker clients are not fork-safe) and, unless ``--no-engine``,
starts ``TIDEWATER_WORKERS`` engine worker threads in that same process. Several processes are
safe: engine workers claim jobs through the store (SQLite ``BEGIN IMMEDIATE``, PostgreSQL
``SKIP LOCKED``) and nonces are compare-and-swap in SQL, but with SQLite one process is the
sensible choice. With ``--no-engine`` the API only queues jobs for a separate engine process.

SIGTERM (graceful) and SIGINT (quick) stop the master, which stops the workers; each worker's
``worker_exit`` hook shuts its engine down (running containers are stopped and recorded).
Bad settings (no ``PROVIDER_PRIVATE_KEY``, an unreachable chain, Docker down) are refused
before anything starts, with one line naming the problem.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from tidewater.errors import CommandError
from tidewater.settings import Settings

HELP = "run the provider API (gunicorn) with the job engine in the same process"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8030
#: Idle keep-alive connections stay open this long: above every common client's own idle
#: timeout (Node's global agent 5 s, browsers, Python requests pools), so a client reusing a
#: connection never races the server's close (gunicorn's default of 2 s reset ocean.js polls).
KEEPALIVE_SECONDS = 75


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default=DEFAULT_HOST, help=f"bind address ({DEFAULT_HOST})")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port ({DEFAULT_PORT})")
    parser.add_argument(
        "--workers-proc", type=int, default=1, help="gunicorn worker processes (default 1)"
    )
    parser.add_argument(
        "--threads", type=int, default=8, help="request threads per process (default 8)"
    )
    parser.add_argument(
        "--no-engine",
        action="store_true",
        help="serve the API only; a separate `tidewater engine` runs the jobs",
    )


def preflight(settings: Settings, *, engine: bool) -> int:
    """Check what start-up needs; returns the chain id or raises a one-line CommandError."""
    settings.require_private_key()
    from contracts_abi.devchain import rpc_chain_id

    try:
        chain_id = rpc_chain_id(settings.network_url, timeout=5.0)
    except Exception as exc:  # requests errors, bad JSON: all mean "no usable chain there"
        raise CommandError(
            f"the chain at NETWORK_URL={settings.network_url} is unreachable "
            f"({type(exc).__name__}): start it with `tidewater chain` or fix NETWORK_URL"
        ) from None
    from operator_engine.environments import EnvironmentConfigError
    from provider.app import check_environments

    try:
        check_environments(settings, chain_id)
    except EnvironmentConfigError as exc:
        raise CommandError(f"compute environments: {exc}") from None
    if engine:
        try:
            import docker

            docker.from_env().ping()
        except Exception as exc:
            raise CommandError(
                f"Docker is not reachable ({type(exc).__name__}): start dockerd, "
                "or use --no-engine to serve the API without running jobs"
            ) from None
    return chain_id


def gunicorn_options(args: argparse.Namespace) -> dict[str, Any]:
    if args.workers_proc < 1 or args.threads < 1:
        raise CommandError("--workers-proc and --threads must be at least 1")
    if not 0 < args.port < 65536:
        raise CommandError(f"--port {args.port} is not a TCP port")
    return {
        "bind": f"{args.host}:{args.port}",
        "workers": args.workers_proc,
        "worker_class": "gthread",
        "threads": args.threads,
        "timeout": 60,
        "graceful_timeout": 30,
        "keepalive": KEEPALIVE_SECONDS,
        "accesslog": None,  # our own JSON lines carry no query strings; gunicorn's would
        "errorlog": "-",
        "preload_app": False,  # each worker builds its app (and engine) after the fork
    }


def metrics_dir(settings: Settings) -> Path:
    """Prepare ``PROMETHEUS_MULTIPROC_DIR`` (an operator's own value wins; else a fresh
    ``metrics/`` in the data dir). Must run before any module imports ``prometheus_client``."""
    given = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    path = Path(given) if given else Path(settings.data_dir) / "metrics"
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    for stale in path.glob("*.db"):  # samples of processes from an earlier run
        stale.unlink()
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(path)
    return path


def run(args: argparse.Namespace) -> int:
    settings = Settings.from_env()
    metrics_dir(settings)

    from gunicorn.app.base import BaseApplication

    from provider.app import ChainUnavailableError, create_app
    from provider.logs import configure_logging

    options = gunicorn_options(args)
    preflight(settings, engine=not args.no_engine)
    configure_logging(settings.log_level)

    class ProviderApplication(BaseApplication):  # type: ignore[misc]
        def __init__(self) -> None:
            self.flask_app: Any = None
            super().__init__()

        def load_config(self) -> None:
            for key, value in options.items():
                self.cfg.set(key, value)
            self.cfg.set("worker_exit", self._worker_exit)
            self.cfg.set("child_exit", _child_exit)

        def load(self) -> Any:
            try:
                self.flask_app = create_app(settings, start_workers=not args.no_engine)
            except ChainUnavailableError as exc:
                raise CommandError(str(exc)) from None
            return self.flask_app

        def _worker_exit(self, _server: Any, _worker: Any) -> None:
            if self.flask_app is not None:
                self.flask_app.extensions["tidewater"].engine.shutdown()

    def _child_exit(_server: Any, worker: Any) -> None:
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)  # its live gauges stop counting

    ProviderApplication().run()
    return 0
