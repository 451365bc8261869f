"""``tidewater engine``: engine workers as their own process (one store shared with the API)."""

from __future__ import annotations

import argparse
import logging
import signal
import threading
from types import FrameType

from tidewater.errors import CommandError
from tidewater.settings import Settings

HELP = "run operator-engine workers (claim jobs from the store and run them in Docker)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--workers", type=int, default=None, help="worker threads (TIDEWATER_WORKERS)"
    )
    parser.add_argument(
        "--lease-seconds",
        type=float,
        default=30.0,
        help="this worker's lease on its jobs (default 30): each heartbeat stores its expiry, "
        "and a job whose lease expired is recovered by another worker",
    )
    parser.add_argument("--poll-seconds", type=float, default=0.5, help="idle claim interval")
    parser.add_argument(
        "--no-pull", action="store_true", help="never pull missing images (status 32 instead)"
    )


def run(args: argparse.Namespace) -> int:
    from operator_engine.api import Engine, EngineError
    from operator_engine.docker_runner import DockerRunner
    from operator_engine.environments import EnvironmentConfigError
    from operator_engine.runner import RunnerError

    settings = Settings.from_env()
    logging.basicConfig(
        level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    workers = settings.workers if args.workers is None else args.workers
    if workers < 1:
        raise CommandError("--workers must be at least 1")
    try:
        runner = DockerRunner(pull=settings.pull_images and not args.no_pull)
        engine = Engine.from_settings(
            settings,
            runner=runner,
            lease_seconds=args.lease_seconds,
            poll_seconds=args.poll_seconds,
        )
        engine.environments()  # a malformed environments file stops start-up here
    except (RunnerError, EngineError, EnvironmentConfigError) as exc:
        raise CommandError(str(exc)) from exc
    stop = threading.Event()
    hits = {"n": 0}

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        hits["n"] += 1
        if hits["n"] > 1:
            raise SystemExit(128 + signum)  # second signal: leave now, leases expire
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    engine.start(workers)
    logging.getLogger(__name__).info("engine running %d worker(s); SIGTERM to stop", workers)
    while not stop.wait(1.0):
        pass
    logging.getLogger(__name__).info("stopping: finishing current steps, releasing leases")
    engine.shutdown(timeout=3600)
    return 0
