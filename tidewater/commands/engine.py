"""``tidewater engine``: engine workers as their own process (one store shared with the API)."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import threading
from collections.abc import Callable
from pathlib import Path
from types import FrameType

from tidewater.errors import CommandError
from tidewater.settings import Settings

log = logging.getLogger("tidewater.engine")
HELP = "run operator-engine workers (claim jobs from the store and run them on their backend)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--workers", type=int, default=None, help="worker threads (TIDEWATER_WORKERS)"
    )
    parser.add_argument(
        "--lease-seconds",
        type=float,
        default=None,
        help="this worker's lease on its jobs (TIDEWATER_LEASE_SECONDS): each heartbeat stores "
        "its expiry, and a job whose lease expired is recovered by another worker",
    )
    parser.add_argument(
        "--poll-seconds",
        type=float,
        default=None,
        help="idle claim interval (TIDEWATER_POLL_SECONDS)",
    )
    parser.add_argument(
        "--no-pull", action="store_true", help="never pull missing images (status 32 instead)"
    )
    parser.add_argument(
        "--backend",
        choices=("kubernetes",),
        default=None,
        help="with --dry-run: the backend whose objects to print",
    )
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="print, as YAML, every object --backend would create for one sample job of the "
        "default environment, then exit (no cluster needed)",
    )


def with_arguments(settings: Settings, args: argparse.Namespace) -> Settings:
    """``settings`` with the command line's overrides (a flag left out keeps the setting)."""
    overrides = {
        "workers": args.workers,
        "lease_seconds": args.lease_seconds,
        "poll_seconds": args.poll_seconds,
        "pull_images": False if args.no_pull else None,
    }
    return settings.with_(**{k: v for k, v in overrides.items() if v is not None})


def run(args: argparse.Namespace) -> int:
    settings = with_arguments(Settings.from_env(), args)
    if args.backend and not args.dry_run:
        raise CommandError(
            "--backend is used with --dry-run only: an engine runs each environment's jobs on "
            "the backend of its platform"
        )
    if args.dry_run:
        return dry_run(settings, args.backend)
    logging.basicConfig(
        level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    return run_engine(settings, workers=settings.workers, pull=settings.pull_images)


def dry_run(settings: Settings, backend: str | None) -> int:
    """Print the Kubernetes objects of one sample job of the default environment (the first
    of TIDEWATER_ENVIRONMENTS, else the built-in one)."""
    if backend is None:
        raise CommandError("--dry-run needs --backend kubernetes")
    from operator_engine.backends.kube_dryrun import render
    from operator_engine.environments import (
        EnvironmentConfigError,
        default_environment,
        load_file,
    )

    try:
        envs = load_file(settings.environments_file) if settings.environments_file else []
    except EnvironmentConfigError as exc:
        raise CommandError(str(exc)) from exc
    env = envs[0] if envs else default_environment()
    print(
        render(
            env,
            settings.kubernetes_namespace,
            settings.kubernetes_image,
            settings.kubernetes_internal_url,
        ),
        end="",
    )
    return 0


def run_engine(
    settings: Settings,
    *,
    workers: int,
    pull: bool | None = None,
    ready: Callable[[], None] = lambda: None,
) -> int:
    """Run engine workers in this process until SIGTERM or SIGINT, then stop them (see
    :meth:`operator_engine.api.Engine.shutdown`): SIGTERM gives running algorithms
    ``settings.stop_grace`` seconds; SIGINT, even during that grace, stops them at once. Calls
    ``ready()`` once the workers run. ``tidewater engine`` and ``tidewater serve``'s engine
    process both run this."""
    from datastore.migrate import schema_lock
    from operator_engine.api import EngineError
    from operator_engine.backends.base import BackendError
    from operator_engine.environments import EnvironmentConfigError
    from tidewater.engine_config import build_engine

    if workers < 1:
        raise CommandError("--workers must be at least 1")
    if pull is not None:
        settings = settings.with_(pull_images=pull)
    try:
        with schema_lock(Path(settings.data_dir)):  # serve's HTTP workers start alongside
            engine = build_engine(settings)
        engine.environments()  # a malformed environments file stops start-up here
        engine.backend.ping()  # a backend that cannot be reached stops start-up here
    except (EngineError, EnvironmentConfigError, BackendError) as exc:
        raise CommandError(str(exc)) from exc
    stop = threading.Event()
    grace = [float(settings.stop_grace)]

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        # A repeated SIGTERM changes nothing: a stop of the whole process group (systemd's
        # default) delivers it to this process and to the supervisor, which forwards it.
        if signum == signal.SIGINT:
            grace[0] = 0.0
            engine.cut_short()  # a shutdown under way stops running algorithms now
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    engine.start(workers)
    log.info(
        "engine running %d worker(s) (pid %d); SIGTERM stops it, giving running algorithms "
        "%d s (TIDEWATER_STOP_GRACE); SIGINT stops them at once",
        workers,
        os.getpid(),
        settings.stop_grace,
    )
    ready()
    while not stop.wait(1.0):
        pass
    log.info("engine stopping: no new jobs; jobs not yet running stay queued to resume")
    engine.shutdown(grace[0])
    engine.backends.close()
    engine.db.dispose()
    log.info("engine stopped")
    return 0
