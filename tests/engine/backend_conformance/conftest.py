"""Fixtures of the conformance suite: the target backend and a harness to run jobs on it."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from operator_engine.api import Engine
from operator_engine.models import Job
from operator_engine.statuses import TERMINAL
from tests.engine.backend_conformance.programs import Program
from tests.engine.backend_conformance.targets import (
    MISSING_IMAGE,
    FakeTarget,
    Gate,
    GatedBackend,
    Target,
    docker_target,
    fake_target,
    kubernetes_target,
)
from tests.engine.conftest import FileServer
from tests.engine.helpers import env, request, settings_for
from tidewater.engine_config import build_engine

DATA = b"x,y\n1,2\n3,4\n"
TARGETS: dict[str, Callable[[pytest.FixtureRequest], Target]] = {
    "fake": lambda request: fake_target(request.getfixturevalue("fake_programs")),
    "docker": docker_target,
    "kubernetes": kubernetes_target,
}


@pytest.fixture
def fake_programs() -> FakeTarget:
    return FakeTarget()


@pytest.fixture(
    params=[
        pytest.param("fake"),
        pytest.param("docker", marks=pytest.mark.integration),
        pytest.param("kubernetes", marks=pytest.mark.integration),
    ]
)
def target(request: pytest.FixtureRequest) -> Iterator[Target]:
    built = TARGETS[request.param](request)
    yield built
    built.cleanup()


class Harness:
    """Builds engines on the target's backend and runs jobs of :class:`Program` s on them."""

    def __init__(
        self, target: Target, tmp_path: Path, server: FileServer, fake: FakeTarget
    ) -> None:
        self.target, self.tmp_path, self.server, self.fake = target, tmp_path, server, fake
        self.engines: list[Engine] = []
        server.files["/data.csv"] = DATA

    def engine(self, gate: Gate | None = None, **env_over: Any) -> Engine:
        envs = [env(platform=self.target.platform, **env_over)]
        settings = settings_for(self.tmp_path, envs, allow_non_public_ip=True)
        backend = GatedBackend(self.target.make_backend(), gate or Gate())
        engine = build_engine(settings, backend=backend, poll_seconds=0.05)  # type: ignore[arg-type]
        self.engines.append(engine)
        return engine

    def submit(self, engine: Engine, program: Program, **kw: Any) -> str:
        script = self.fake.register(program)
        name, tag = kw.pop("image", self.target.image)
        kw.setdefault("files", [{"type": "url", "url": self.server.url("/data.csv")}])
        job = engine.submit(
            request(rawcode=script, image=name, tag=tag, entrypoint="sh $ALGO", **kw)
        )
        return job.job_id

    def run(self, engine: Engine, program: Program, **kw: Any) -> Job:
        job_id = self.submit(engine, program, **kw)
        engine.run_until_idle(timeout=180)
        return self.ended(engine, job_id)

    @staticmethod
    def ended(engine: Engine, job_id: str, timeout: float = 120.0) -> Job:
        """The job once it is terminal and its worker let it go."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            row = engine.store.row(job_id)
            job = engine.get(job_id)
            if row is not None and row.worker_id is None and job is not None:
                if job.status in TERMINAL:
                    return job
            time.sleep(0.05)
        raise AssertionError(f"job {job_id} did not end within {timeout}s")

    @staticmethod
    def results(engine: Engine, job: Job) -> dict[tuple[str, str], bytes]:
        """Every result as the provider serves it, each checked against its size and sha256."""
        found = {}
        for index, result in enumerate(job.results):
            path, _entry = engine.open_result(job.job_id, index)
            body = path.read_bytes()
            assert (len(body), hashlib.sha256(body).hexdigest()) == (
                result.filesize,
                result.sha256,
            ), result
            found[(result.type, result.filename)] = body
        return found

    def close(self) -> None:
        for engine in self.engines:
            engine.shutdown(grace=0)
            for backend in engine.backends:
                for cid, _job in backend.containers():
                    backend.remove(cid)
            engine.backends.close()
            engine.db.dispose()


@pytest.fixture
def harness(
    target: Target, tmp_path: Path, file_server: FileServer, fake_programs: FakeTarget
) -> Iterator[Harness]:
    built = Harness(target, tmp_path, file_server, fake_programs)
    yield built
    built.close()


__all__ = ["DATA", "MISSING_IMAGE", "Harness"]
