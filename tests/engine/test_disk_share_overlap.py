"""The disk share made while the container is created (quota's background area), and dropped in
the background after the run: real loop mounts, and real Docker where containers are involved."""

from __future__ import annotations

import io
import os
import stat
from pathlib import Path

import docker
import pytest

from operator_engine.backends import quota
from operator_engine.backends.base import ContainerSpec, Limits
from operator_engine.backends.docker import DockerBackend
from operator_engine.workspace import ALGORITHM_LOG, ALGORITHM_UID, JobFolder, drop_work_area
from tests.engine.helpers import docker_run_area

SHARE = 8 * 1024**2
needs_loop = pytest.mark.skipif(
    not quota.loop_available(), reason="loop-mounted quotas need root, mount(8) and mkfs.ext4"
)


def _refuse(*argv: str) -> None:
    raise quota.QuotaError(f"{argv[0]}: permission denied")


@pytest.fixture
def loop_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """Loop mounts look available, but mkfs and mount are refused."""
    monkeypatch.setattr(quota, "loop_available", lambda: True)
    monkeypatch.setattr(quota, "_run", _refuse)
    monkeypatch.setattr(quota, "_loop_failed", False)


def _new_folder(root: Path) -> JobFolder:
    folder = JobFolder(root / "job")
    folder.create()
    return folder


@needs_loop
def test_a_background_area_is_mounted_with_its_writable_folders_once_ready(
    tmp_path: Path,
) -> None:
    folder = _new_folder(tmp_path)
    area = quota.prepare(folder, SHARE, 100, "loop", background=True)
    # what Docker checks when it creates the container exists at once, mounted or not
    assert area.outputs == folder.work / "outputs" and area.outputs.is_dir()
    assert area.logs == folder.work / "logs" and area.logs.is_dir()
    area.ready()
    assert os.path.ismount(folder.work) and area.mode == "loop"
    assert area.outputs.stat().st_uid == ALGORITHM_UID
    assert stat.S_IMODE(area.outputs.stat().st_mode) == 0o700
    assert stat.S_IMODE(area.logs.stat().st_mode) == 0o1777
    assert (area.logs / ALGORITHM_LOG).stat().st_uid == 0
    assert not folder.work_template.exists()
    assert not area.is_exceeded()
    with area.open_log() as log:
        log.write(b"printed\n")
    (area.outputs / "result.txt").write_text("ok\n")
    area.release(keep_outputs=True)
    assert (folder.outputs / "result.txt").read_text() == "ok\n"
    assert folder.log(ALGORITHM_LOG).read_bytes() == b"printed\n"
    drop_work_area(folder)  # waits for the background drop the release started
    assert not folder.work.exists() and not folder.work_image.exists()


@needs_loop
def test_a_background_drop_is_waited_for_by_the_next_drop(tmp_path: Path) -> None:
    folder = _new_folder(tmp_path)
    area = quota.prepare(folder, SHARE, 100, "loop", background=True)
    area.ready()
    area.release(keep_outputs=False)
    folder.remove_inputs()
    assert not folder.work.exists() and not folder.work_image.exists()
    assert not os.path.ismount(folder.work)


@pytest.mark.usefixtures("loop_refused")
@pytest.mark.parametrize("setting", ["loop", "auto"])
def test_a_background_area_that_fails_raises_under_loop_and_polls_under_auto(
    tmp_path: Path, setting: str
) -> None:
    folder = _new_folder(tmp_path)
    area = quota.prepare(folder, SHARE, 100, setting, background=True)
    if setting == "loop":
        for _ in range(2):  # asked again, the same answer
            with pytest.raises(quota.QuotaError, match="permission denied"):
                area.ready()
    else:  # the job's own folders, polled; and so for the rest of the process
        area.ready()
        assert area.mode == "poll" and (area.outputs, area.logs) == (folder.outputs, folder.logs)
        assert quota.prepare(folder, SHARE, 100, "auto", background=True).mode == "poll"
    area.release(keep_outputs=True)
    assert not folder.work.exists() and not folder.work_image.exists()
    assert not folder.work_template.exists()


# -- real Docker -----------------------------------------------------------------------------


def _run_container(
    backend: DockerBackend, image: str, area: quota.WritableArea, command: str
) -> bytes:
    """Start ``command`` in ``area`` through the backend, wait for it, return what it printed."""
    spec = ContainerSpec(
        job_id="job",
        image=image,
        command=command,
        environment={},
        limits=Limits(cpu=1, memory=256 * 1024**2, disk=SHARE, duration=60),
    )
    cid = backend.start(spec, area)
    try:
        sink = io.BytesIO()
        backend.follow_logs(cid, sink, 64 * 1024)
        assert backend.wait(cid).exit_code == 0, sink.getvalue()
        assert backend.containers("job") == [(cid, "job")]  # one container, the one started
    finally:
        backend.remove(cid)
    return sink.getvalue()


@pytest.mark.integration
@needs_loop
def test_docker_starts_the_container_on_the_mounted_share(
    tmp_path: Path, docker_client: docker.DockerClient, busybox_image: str
) -> None:
    backend, workspace, area, image = docker_run_area(
        tmp_path, docker_client, busybox_image, "loop", SHARE
    )
    printed = _run_container(
        backend,
        image,
        area,
        "grep -E ' /data/(outputs|logs) ' /proc/self/mountinfo; echo hi > /data/outputs/o.txt",
    )
    mounts = printed.decode().splitlines()
    assert len(mounts) == 2 and all(" - ext4 " in line for line in mounts), printed
    area.release(keep_outputs=True)
    assert (workspace.folder.outputs / "o.txt").read_text() == "hi\n"
    workspace.remove_inputs()
    assert not workspace.folder.work.exists()


@pytest.mark.integration
@pytest.mark.usefixtures("loop_refused")
def test_docker_recreates_the_container_when_auto_falls_back_to_polling(
    tmp_path: Path, docker_client: docker.DockerClient, busybox_image: str
) -> None:
    backend, workspace, area, image = docker_run_area(
        tmp_path, docker_client, busybox_image, "auto", SHARE
    )
    assert area.outputs == workspace.folder.work / "outputs"  # created with these first
    _run_container(backend, image, area, "echo hi > /data/outputs/o.txt")
    assert area.mode == "poll"
    assert (workspace.folder.outputs / "o.txt").read_text() == "hi\n"
    area.release(keep_outputs=True)
    assert not workspace.folder.work.exists()
