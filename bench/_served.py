"""The request benches' common set-up: ganache, one finished busybox job of the dev consumer,
and ``tidewater serve`` (API only) on its store, with the URLs of the endpoints they load."""

from __future__ import annotations

import sys
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

from bench._common import bench_engine, bench_stack, run_shell_job, serve_args
from contracts_abi.devchain import dev_account
from tidewater.settings import Settings
from tidewater.stack import provider_server

#: The job whose status the benches read: one small result, the row count of its input.
STATUS_JOB_SCRIPT = 'echo "rows: $(wc -l < $INPUTS/*/0)" > $OUTPUTS/summary.txt\n'


def _stderr(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


@dataclass(frozen=True)
class ServedProvider:
    """A running ``tidewater serve`` and the finished job it answers for."""

    url: str
    consumer: str
    job_id: str

    @property
    def nonce_url(self) -> str:
        return f"{self.url}/api/services/nonce?userAddress={self.consumer}"

    @property
    def status_url(self) -> str:
        return (
            f"{self.url}/api/services/compute?consumerAddress={self.consumer}&jobId={self.job_id}"
        )


def served_provider(
    stack: ExitStack,
    folder: Path,
    env_id: str,
    *,
    workers_proc: int,
    threads: int,
    log_level: str = "INFO",
    note: Callable[[str], None] = _stderr,
) -> ServedProvider:
    """Run one job of the dev ``consumer`` to its end, then ``tidewater serve --no-engine`` on
    the same store (stopped with ``stack``)."""
    consumer = dev_account("consumer").address
    env, files = bench_stack(stack, folder, env_id, log_level=log_level, maxJobDuration=120)
    note("running one real job so the status lookup finds it...")
    with bench_engine(Settings.from_env(env)) as engine:
        job = run_shell_job(
            engine,
            owner=consumer,
            env_id=env_id,
            script=STATUS_JOB_SCRIPT,
            dataset_url=files + "/data.csv",
        )
    note("starting tidewater serve...")
    url = stack.enter_context(
        provider_server(
            env, extra_args=serve_args(workers_proc, threads), log_path=folder / "provider.log"
        )
    )
    return ServedProvider(url, consumer, job.job_id)
