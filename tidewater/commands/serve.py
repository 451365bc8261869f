"""``tidewater serve``: the provider API under gunicorn and the job engine, in separate
processes under one supervisor (:mod:`tidewater.processes`).

Process model: ``tidewater serve`` itself only supervises. It forks the gunicorn master, which
forks ``--workers-proc`` HTTP worker processes (gthread, ``--threads`` each; by default one per
usable core, at most 4) that build the Flask app after the fork and never run jobs; once
gunicorn listens it forks the engine process, which runs ``TIDEWATER_WORKERS`` engine worker
threads (the same code as ``tidewater engine``). A request that kills an HTTP worker costs
gunicorn one worker, never a running job; an engine that dies is restarted (1 s, doubling to 30
s) and its sweep recovers the jobs. Both children die with the supervisor
(``PR_SET_PDEATHSIG``). With ``--no-engine`` there is no supervisor and no engine: this process
is gunicorn's master and the API only queues jobs for a separate ``tidewater engine``.

Start-up: the API answers before any job is recovered; the engine's first worker sweeps
(resumes or ends abandoned jobs) in its own thread.

Stopping: SIGTERM is graceful. gunicorn stops accepting and gives its requests up to
``graceful_timeout`` (30 s; a log stream still open then is cut). The engine claims nothing
more (:meth:`operator_engine.api.Engine.shutdown`): a job that has not run yet (10-30) stops at
its next stage boundary, waited for up to 2 s (a stage still busy then, such as a slow
download, is cut off by the process exit), keeps its status and resumes at the next start;
jobs past their run (50, 60) finish; a running algorithm (40) gets ``TIDEWATER_STOP_GRACE``
seconds (default 20) to finish, after which its container is stopped and the job ends at 7
(``stopped: the provider shut down while the algorithm ran``) with its logs as results. The
engine logs what became of each job it held. SIGINT, or a second signal, does the same without
the grace; a child still running ``TIDEWATER_STOP_GRACE`` + 40 s into a stop is killed
(:class:`tidewater.processes.Supervisor`). Bad settings (no ``PROVIDER_PRIVATE_KEY``, an
unreachable chain, the container backend down, a malformed environments file) are refused
before anything serves, with one line naming the problem.
"""

from __future__ import annotations

import argparse
import gc
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tidewater.errors import CommandError
from tidewater.settings import Settings

HELP = "run the provider API (gunicorn) and the job engine (its own process)"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8030
#: Idle keep-alive connections stay open this long: above every common client's own idle
#: timeout (Node's global agent 5 s, browsers, Python requests pools), so a client reusing a
#: connection never races the server's close (gunicorn's default of 2 s reset ocean.js polls).
KEEPALIVE_SECONDS = 75
log = logging.getLogger("tidewater.serve")


#: The default HTTP process count stops here: each process holds an app of its own in memory.
MAX_DEFAULT_PROCESSES = 4


def default_http_processes() -> int:
    """One gunicorn process per core this process may run on (``sched_getaffinity``: a
    container's cpuset counts, not the host's cores), at most :data:`MAX_DEFAULT_PROCESSES`.
    Requests are CPU-bound Python under one GIL per process, and the engine runs in a process
    of its own, so more HTTP processes never multiply engine workers."""
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        usable = os.cpu_count() or 1
    return max(1, min(usable, MAX_DEFAULT_PROCESSES))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default=DEFAULT_HOST, help=f"bind address ({DEFAULT_HOST})")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port ({DEFAULT_PORT})")
    parser.add_argument(
        "--workers-proc",
        type=int,
        default=default_http_processes(),
        help=f"gunicorn worker processes (default: one per usable core, at most "
        f"{MAX_DEFAULT_PROCESSES}; here {default_http_processes()})",
    )
    parser.add_argument(
        "--threads", type=int, default=8, help="request threads per process (default 8)"
    )
    parser.add_argument(
        "--no-engine",
        action="store_true",
        help="serve the API only; a separate `tidewater engine` runs the jobs",
    )


def preflight(settings: Settings, *, engine: bool) -> list[int]:
    """Check what start-up needs; returns the chain ids that answered, or raises a one-line
    CommandError. A plain NETWORK_URL must answer; of a JSON NETWORK_URL, a chain that is down
    is logged and served as unavailable (it must not keep the others from being served)."""
    settings.require_private_key()
    if settings.environments_file is not None:
        from operator_engine.environments import EnvironmentConfigError, load_file

        try:
            load_file(settings.environments_file)
        except EnvironmentConfigError as exc:
            raise CommandError(str(exc)) from None
    from contracts_abi.devchain import rpc_chain_id
    from provider.chains import host_of

    answered = []
    for chain_id, url in settings.rpc_urls().items():
        try:
            found = rpc_chain_id(url, timeout=5.0)
        except Exception as exc:  # requests errors, bad JSON: all mean "no usable chain there"
            if chain_id:
                log.warning(
                    "chain %s (%s) is unreachable (%s): serving it as unavailable until it answers",
                    chain_id,
                    host_of(url),
                    type(exc).__name__,
                )
                continue
            raise CommandError(
                f"the chain at NETWORK_URL={url} is unreachable "
                f"({type(exc).__name__}): start it with `tidewater chain` or fix NETWORK_URL"
            ) from None
        if chain_id and found != chain_id:
            raise CommandError(
                f"NETWORK_URL: the node for chain {chain_id} ({host_of(url)}) is chain {found}"
            )
        settings.private_key_for(found)
        answered.append(found)
    from operator_engine.environments import EnvironmentConfigError
    from provider.chains import check_environments  # not provider.app: no prometheus_client yet

    try:
        check_environments(settings, answered)
    except EnvironmentConfigError as exc:
        raise CommandError(f"compute environments: {exc}") from None
    if engine:
        from operator_engine.backends.base import DEFAULT_PLATFORM, BackendError, build
        from tidewater.engine_config import engine_config

        try:
            backend = build(DEFAULT_PLATFORM, engine_config(settings))
            try:
                backend.ping()
            finally:
                backend.close()
        except BackendError as exc:
            raise CommandError(
                f"{exc}, or use --no-engine to serve the API without running jobs"
            ) from None
    return answered


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
        "preload_app": False,  # each worker builds its app after the fork
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
    options = gunicorn_options(args)
    preflight(settings, engine=not args.no_engine)
    metrics_dir(settings)  # once start-up is sure, and before anything imports prometheus_client

    from provider.logs import configure_logging

    configure_logging(settings.log_level)
    if args.no_engine:
        return serve_api(settings, options)
    # Imported once here, before the forks: both children start without importing them again.
    import operator_engine.api  # noqa: F401
    import provider.app  # noqa: F401
    from operator_engine.backends.base import preload
    from tidewater.commands.engine import run_engine
    from tidewater.processes import Child, Supervisor

    preload()

    api = Child("the API server (gunicorn)", lambda ready: serve_api(settings, options, ready))

    def engine_main(ready: Callable[[], None]) -> int:
        try:
            return run_engine(settings, workers=settings.workers, ready=ready)
        except CommandError as exc:  # one line, as the CLI prints it; the supervisor stops
            print(f"tidewater serve: error: {exc}", file=sys.stderr)
            return 2

    engine = Child("the engine", engine_main, on_exit=_metrics_of_dead_process)
    return Supervisor(api, engine, grace=settings.stop_grace).run()


def _metrics_of_dead_process(pid: int) -> None:
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(pid)  # a dead engine's live gauges stop counting


def serve_api(
    settings: Settings, options: dict[str, Any], ready: Callable[[], None] = lambda: None
) -> int:
    """Run gunicorn's master in this process (it forks the HTTP workers, which build the app
    without engine workers); ``ready()`` once it listens."""
    from gunicorn.app.base import BaseApplication

    from datastore.migrate import schema_lock
    from operator_engine.api import EngineError
    from operator_engine.environments import EnvironmentConfigError
    from provider.app import create_app
    from provider.chains import ChainUnavailableError

    class ProviderApplication(BaseApplication):  # type: ignore[misc]
        def load_config(self) -> None:
            for key, value in options.items():
                self.cfg.set(key, value)
            if "control_socket_disable" in self.cfg.settings:  # gunicorn >= 24: one shared
                self.cfg.set("control_socket_disable", True)  # ~/.gunicorn socket; unused
            self.cfg.set("when_ready", lambda _arbiter: ready())
            self.cfg.set("child_exit", _child_exit)
            self.cfg.set("worker_exit", _worker_exit)

        def load(self) -> Any:
            try:
                with schema_lock(Path(settings.data_dir)):  # one process upgrades the schema
                    app = create_app(settings)
            except (ChainUnavailableError, EnvironmentConfigError, EngineError) as exc:
                raise CommandError(str(exc)) from None
            # Everything loaded so far (modules, web3, the app) lives as long as the worker:
            # keep it out of the collector's full passes, which otherwise scan it all (~50 ms
            # holding the GIL, every request thread stalled: the p99 tail under load).
            gc.freeze()
            return app

    def _worker_exit(_server: Any, _worker: Any) -> None:
        from provider.request_accounting import flush

        flush()  # in the exiting worker: its last requests' lines and samples

    def _child_exit(_server: Any, worker: Any) -> None:
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)  # its live gauges stop counting

    ProviderApplication().run()
    return 0
