"""The backends the conformance suite runs against, and a transparent gate around any of them.

A :class:`Target` says how to build a fresh backend and which image its containers run. Every
available target runs the whole job table: ``fake`` always; ``docker`` (integration) on the real
Docker engine with the local busybox image; ``kubernetes`` only with ``TIDEWATER_TEST_KUBECONFIG``
set, built by ``make_target()`` of :mod:`tests.engine.backend_conformance.kubernetes_target`
(the Kubernetes backend's own module; skipped with the reason when either is missing).
"""

from __future__ import annotations

import importlib
import os
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from operator_engine.backends.base import (
    Backend,
    ContainerSpec,
    JobWorkspace,
    RunArea,
    StoredFile,
    Volume,
)
from operator_engine.backends.fake import FakeBackend
from tests.engine.backend_conformance.programs import Program, interpret

#: the image no backend has and none may pull
MISSING_IMAGE = ("tidewater/no-such-image", "1")


@dataclass
class Target:
    name: str
    platform: str
    make_backend: Callable[[], Backend]
    image: tuple[str, str]  # (name, tag) of an image with busybox sh, present or pullable
    cleanup: Callable[[], None] = lambda: None
    isolates: bool = True  # runs algorithms sandboxed (all but the fake)


@dataclass
class FakeTarget:
    """The fake backend, interpreting each job's staged script as its :class:`Program`."""

    programs: dict[str, Program] = field(default_factory=dict)

    def register(self, program: Program) -> str:
        script = program.script()
        self.programs[script] = program
        return script

    def algorithm(
        self, spec: ContainerSpec, dirs: dict[Volume, Path], killed: threading.Event
    ) -> tuple[int, bool, bytes]:
        script = (dirs["algorithm"] / "algorithm").read_text()
        return interpret(self.programs[script], dirs, spec, killed)


def fake_target(fake: FakeTarget) -> Target:
    return Target(
        "fake",
        "docker",
        lambda: FakeBackend(fake.algorithm),
        ("tidewater/fake", "1"),
        isolates=False,
    )


def docker_target(request: pytest.FixtureRequest) -> Target:
    from operator_engine.backends.docker import DockerBackend

    client = request.getfixturevalue("docker_client")
    name, tag = request.getfixturevalue("busybox_image").rsplit(":", 1)
    return Target("docker", "docker", lambda: DockerBackend(client, pull=False), (name, tag))


def kubernetes_target(request: pytest.FixtureRequest) -> Target:
    kubeconfig = os.environ.get("TIDEWATER_TEST_KUBECONFIG")
    if not kubeconfig:
        pytest.skip("TIDEWATER_TEST_KUBECONFIG is not set: Kubernetes runs only on a real cluster")
    try:
        module = importlib.import_module("tests.engine.backend_conformance.kubernetes_target")
    except ImportError as exc:
        pytest.skip(f"no Kubernetes conformance target here ({exc})")
    target: Target = module.make_target(request, kubeconfig)
    return target


class Gate:
    """Holds the worker at one seam (``point``) the first time it is reached."""

    def __init__(self, point: str | None = None) -> None:
        self.point = point
        self.reached = threading.Event()
        self.release = threading.Event()

    def passing(self, point: str) -> None:
        if point == self.point and not self.reached.is_set():
            self.reached.set()
            if not self.release.wait(120):
                raise TimeoutError(f"the test never released the gate at {point}")


class GatedWorkspace:
    """A workspace that passes its calls through, stopping at the gate's seam on the way."""

    def __init__(self, inner: JobWorkspace, gate: Gate) -> None:
        self.inner, self.gate = inner, gate
        self.job_id = inner.job_id

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def stage(
        self, volume: Volume, name: str, chunks: Iterable[bytes], *, executable: bool = False
    ) -> tuple[int, str]:
        self.gate.passing("stage")
        return self.inner.stage(volume, name, chunks, executable=executable)

    def outputs(self) -> tuple[list[tuple[str, int]], list[str]]:
        self.gate.passing("outputs")
        return self.inner.outputs()

    def result(self, volume: Volume, name: str) -> StoredFile:
        self.gate.passing("result")
        return self.inner.result(volume, name)


class GatedBackend:
    """A backend that passes its calls through, stopping at the gate's seam on the way."""

    def __init__(self, inner: Backend, gate: Gate) -> None:
        self.inner, self.gate = inner, gate

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def resolve_image(
        self, image: str, tag: str | None, checksum: str | None, auth: Any = None
    ) -> str:
        self.gate.passing("resolve_image")
        return self.inner.resolve_image(image, tag, checksum, auth)

    def workspace(self, job_id: str) -> GatedWorkspace:
        return GatedWorkspace(self.inner.workspace(job_id), self.gate)

    def start(self, spec: ContainerSpec, area: RunArea) -> str:
        self.gate.passing("start")
        return self.inner.start(spec, area)
