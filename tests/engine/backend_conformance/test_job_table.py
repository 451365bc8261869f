"""One job table, every backend: the same statuses, reasons, exit details and results.

Each row is a job (a :class:`Program` plus what the environment and request change) and what
must come of it; stops are made while the job is held at each stage's seam."""

from __future__ import annotations

import json
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import pytest

from operator_engine.statuses import JobStatus
from tests.engine.backend_conformance.conftest import DATA, Harness
from tests.engine.backend_conformance.programs import (
    CheckSandbox,
    Copy,
    ExhaustMemory,
    ExitWith,
    Flood,
    Print,
    Program,
    SleepUntilKilled,
    Write,
)
from tests.engine.backend_conformance.targets import MISSING_IMAGE, Gate
from tests.engine.helpers import did

LOGS = {"algorithmLog", "configrationLog", "publishLog"}
SHARE_MIB = 16
CUSTOM = {"factor": 7}
#: the first dataset's DDO as tests.engine.helpers.request sends it
DDO = {"id": did(1), "metadata": {"type": "dataset"}}


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class Case:
    status: JobStatus
    reason: str | None  # a part of the job's reason (None: no reason)
    program: Program = field(default_factory=lambda: Program((Print("hello"),)))
    env: dict[str, Any] = field(default_factory=dict)
    request: dict[str, Any] = field(default_factory=dict)
    outputs: dict[str, bytes] = field(default_factory=dict)  # name -> content, exactly these
    log_has: str | None = None  # a line of the algorithm log
    exit_code: int | None = None
    oom_killed: bool = False
    stopreq: int = 0
    events: list[int] | None = None
    isolating_only: bool = False  # the fake backend isolates nothing


SHARE_ENV = {"diskGB": SHARE_MIB / 1024, "maxJobs": 1, "egress": {"maxBytes": 1 << 30}}
CASES: dict[str, Case] = {
    "success": Case(
        JobStatus.FINISHED,
        None,
        Program(
            (
                Print("reading"),
                Copy("input", "input.csv"),
                Copy("ddo", "ddo.json"),
                Copy("custom", "custom.json"),
                Write("big.bin", 100_000),
            )
        ),
        request={"customdata": CUSTOM},
        outputs={
            "input.csv": DATA,
            "ddo.json": json.dumps(DDO).encode(),
            "custom.json": json.dumps(CUSTOM).encode(),
            "big.bin": b"x" * 100_000,
        },
        log_has="reading",
        events=[1, 10, 20, 30, 40, 50, 60, 70],
    ),
    "sandbox": Case(
        JobStatus.FINISHED,
        None,
        Program((CheckSandbox("sandbox.txt"),)),
        outputs={"sandbox.txt": b"sandboxed\n"},
        isolating_only=True,
    ),
    "31_unreachable_dataset": Case(
        JobStatus.DATA_PROVISIONING_FAILED,
        "unreachable",
        request={"files": [{"type": "url", "url": f"http://127.0.0.1:{closed_port()}/x"}]},
        events=[1, 10, 20, 31],
    ),
    "32_missing_image": Case(
        JobStatus.ALGO_PROVISIONING_FAILED,
        "could not be pulled",
        request={"image": MISSING_IMAGE},
        events=[1, 10, 20, 32],
    ),
    "32_wrong_digest": Case(
        JobStatus.ALGO_PROVISIONING_FAILED,
        "does not match checksum",
        request={"checksum": "sha256:" + "0" * 64},
    ),
    "32_algorithm_404": Case(
        JobStatus.ALGO_PROVISIONING_FAILED,
        "HTTP 404",
        request={"algo_files": [{"type": "url", "url": "/missing.sh"}]},
    ),
    "41_exit_code": Case(
        JobStatus.RUN_FAILED,
        "exit code 3",
        Program((Print("bye"), ExitWith(3))),
        log_has="bye",
        exit_code=3,
        events=[1, 10, 20, 30, 40, 41],
    ),
    "41_out_of_memory": Case(
        JobStatus.RUN_FAILED,
        "out of memory",
        Program((ExhaustMemory(),)),
        env={"ramGB": 0.125},
        oom_killed=True,
    ),
    "42_past_the_disk_share": Case(
        JobStatus.EGRESS_EXCEEDED,
        "disk share",
        Program((Write("big", 4 * SHARE_MIB << 20), Print("done"))),
        env=SHARE_ENV,
    ),
    "42_output_flood": Case(
        JobStatus.EGRESS_EXCEEDED,
        "disk share",
        Program((Flood(4 * SHARE_MIB << 20),)),
        env=SHARE_ENV,
    ),
    "42_outputs_over_cap": Case(
        JobStatus.EGRESS_EXCEEDED,
        "allows at most",
        Program((Write("big", 5000),)),
        env={"egress": {"maxBytes": 1000, "maxFiles": 5}},
        events=[1, 10, 20, 30, 40, 50, 42],
    ),
    "7_time_limit": Case(
        JobStatus.STOPPED,
        "time limit",
        Program((Print("sleeping"), SleepUntilKilled())),
        env={"maxJobDuration": 2},
        log_has="sleeping",
        stopreq=2,
    ),
}


def check(harness: Harness, engine: Any, job_id: str, case: Case) -> None:
    job = harness.ended(engine, job_id)
    assert job.status is case.status, job.reason
    if case.reason is None:
        assert job.reason is None, job.reason
    else:
        assert job.reason and case.reason in job.reason, job.reason
    if case.exit_code is not None:
        assert job.exit_code == case.exit_code
    assert bool(job.oom_killed) is case.oom_killed
    assert job.stopreq == case.stopreq
    if case.events is not None:
        assert [to for _f, to, _d in engine.store.events(job_id)] == case.events
    results = harness.results(engine, job)
    outputs = {name: body for (type_, name), body in results.items() if type_ == "output"}
    assert outputs == case.outputs
    assert {type_ for type_, _name in results} - {"output"} == LOGS
    log = results[("algorithmLog", "algorithm.log")].decode(errors="replace")
    if case.log_has is not None:
        assert case.log_has in log.splitlines(), log[-500:]
    if case.reason is not None:
        assert case.reason in results[("publishLog", "publish.log")].decode()
    assert not any(backend.containers(job_id) for backend in engine.backends)


@pytest.mark.parametrize("case_id", list(CASES))
def test_job_table(harness: Harness, case_id: str) -> None:
    case = CASES[case_id]
    if case.isolating_only and not harness.target.isolates:
        pytest.skip(f"the {harness.target.name} backend does not isolate algorithms")
    engine = harness.engine(**case.env)
    request = dict(case.request)
    if "algo_files" in request:
        request["algo_files"] = [{"type": "url", "url": harness.server.url("/missing.sh")}]
    job = harness.run(engine, case.program, **request)
    check(harness, engine, job.job_id, case)


STOPPED = Case(JobStatus.STOPPED, "stopped by its owner", stopreq=1)
#: seam -> the status the job is at while held there
SEAMS = {
    "stage": JobStatus.CONFIGURING,
    "resolve_image": JobStatus.CONFIGURING,
    "start": JobStatus.RUNNING,
    "running": JobStatus.RUNNING,
    "outputs": JobStatus.FILTERING,
    "result": JobStatus.PUBLISHING,
}


def _until(predicate: Any, what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


@pytest.mark.parametrize("seam", list(SEAMS))
def test_stop_at_each_stage(harness: Harness, seam: str) -> None:
    """A stop while the job is held at ``seam`` ends it at 7 with its logs, nothing else."""
    gate = Gate(None if seam == "running" else seam)
    engine = harness.engine(gate)
    program = Program((Print("started"), SleepUntilKilled() if seam == "running" else Print("x")))
    job_id = harness.submit(engine, program)
    engine.start(1)
    if seam == "running":
        _until(
            lambda: any(backend.containers(job_id) for backend in engine.backends),
            "the algorithm's container",
        )
    else:
        assert gate.reached.wait(120), f"the job never reached {seam}"
    row = engine.store.row(job_id)
    assert row is not None and JobStatus(row.status) is SEAMS[seam]
    stopper = threading.Thread(target=engine.stop, args=(job_id,))
    stopper.start()
    _until(lambda: engine.get(job_id).status is JobStatus.STOPPED, "the stop")  # type: ignore[union-attr]
    gate.release.set()
    stopper.join(60)
    check(harness, engine, job_id, STOPPED)
