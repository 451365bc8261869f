"""Real Docker: ``DockerBackend.wait`` reads a container's exit from one inspect once it has
ended, and waits first for one still running."""

from __future__ import annotations

from pathlib import Path

import docker
import pytest

from operator_engine.backends.base import ContainerSpec, Limits
from tests.engine.helpers import docker_run_area

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("follow", [True, False])
def test_wait_gives_the_exit_code_whether_or_not_it_has_ended(
    follow: bool, tmp_path: Path, docker_client: docker.DockerClient, busybox_image: str
) -> None:
    backend, _workspace, area, image = docker_run_area(
        tmp_path, docker_client, busybox_image, "poll", 1024**2
    )
    spec = ContainerSpec(
        "job", image, "sleep 1; echo done; exit 3", {}, Limits(1, 64 * 1024**2, 1024**2, 60)
    )
    cid = backend.start(spec, area)
    try:
        if follow:  # its output ended: it has ended (the run stage's order)
            with area.open_log() as log:
                backend.follow_logs(cid, log, 1024)
        info = backend.wait(cid)  # not followed: still running, waited for
    finally:
        backend.remove(cid)
        area.release(keep_outputs=False)
    assert (info.exit_code, info.oom_killed) == (3, False)
