"""The one disk share (fast layer: FakeBackend writes into the job's writable area)."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from operator_engine.backends import quota
from operator_engine.backends.base import ContainerSpec
from operator_engine.backends.fake import FakeBackend
from operator_engine.statuses import JobStatus
from operator_engine.workspace import JobFolder
from tests.engine.conftest import FileServer
from tests.engine.helpers import env, request, settings_for
from tidewater.engine_config import build_engine

SHARE = 8 * 1024**2


def _writer(target: str, size: int):  # type: ignore[no-untyped-def]
    def algo(spec: ContainerSpec, dirs: dict[str, Path], killed: threading.Event):
        if target == "stdout":
            return 0, False, b"y" * size
        try:
            with open(dirs[target] / "big", "wb") as out:
                for _ in range(size // 65536):
                    out.write(b"\0" * 65536)
        except OSError as exc:  # ENOSPC from a loop-mounted area
            return 1, False, f"write failed: {exc}\n".encode()
        return 0, False, b"wrote\n"

    return algo


@pytest.mark.parametrize("mode", ["poll", "loop"])
@pytest.mark.parametrize("target", ["logs", "outputs", "stdout"])
def test_past_the_share_ends_42_with_nothing_over_it_left(
    tmp_path: Path, file_server: FileServer, mode: str, target: str
) -> None:
    if mode == "loop" and not quota.loop_available():
        pytest.skip("loop-mounted quotas need root, mount(8) and mkfs.ext4")
    file_server.files["/d"] = b"x\n"
    settings = settings_for(tmp_path, [env(diskGB=SHARE / 1024**3)], allow_non_public_ip=True)
    backend = FakeBackend(_writer(target, 3 * SHARE), disk_quota=mode)
    engine = build_engine(settings, backend=backend)
    job = engine.submit(request(files=[{"type": "url", "url": file_server.url("/d")}]))
    engine.run_until_idle()
    done = engine.get(job.job_id)
    assert done is not None and done.status is JobStatus.EGRESS_EXCEEDED, done
    folder = engine.services.folder(job.job_id)
    assert not folder.work.exists() and not folder.work_image.exists()
    assert not list(folder.outputs.iterdir())
    assert sorted(p.name for p in folder.logs.iterdir()) == [
        "algorithm.log",
        "configure.log",
        "publish.log",
    ]
    assert folder.log("algorithm.log").stat().st_size <= SHARE


def test_within_the_share_the_outputs_are_published(
    tmp_path: Path, file_server: FileServer
) -> None:
    file_server.files["/d"] = b"x\n"
    settings = settings_for(tmp_path, [env(diskGB=SHARE / 1024**3)], allow_non_public_ip=True)
    engine = build_engine(settings, backend=FakeBackend(_writer("outputs", SHARE // 2)))
    job = engine.submit(request(files=[{"type": "url", "url": file_server.url("/d")}]))
    engine.run_until_idle()
    done = engine.get(job.job_id)
    assert done is not None and done.status is JobStatus.FINISHED, done.reason
    assert [(r.filename, r.filesize) for r in done.results if r.type == "output"] == [
        ("big", SHARE // 2)
    ]
    assert not engine.services.folder(job.job_id).work.exists()


def test_auto_falls_back_to_polling_when_loop_mounts_fail(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(*argv: str) -> None:
        raise quota.QuotaError(f"{argv[0]}: permission denied")

    monkeypatch.setattr(quota, "loop_available", lambda: True)
    monkeypatch.setattr(quota, "_run", refuse)
    monkeypatch.setattr(quota, "_loop_failed", False)
    folder = JobFolder(tmp_path / "job")
    folder.create()
    with pytest.raises(quota.QuotaError, match="permission denied"):
        quota.prepare(folder, SHARE, 100, "loop")
    area = quota.prepare(folder, SHARE, 100, "auto")
    assert area.mode == "poll" and area.outputs == folder.outputs
    assert not folder.work.exists() and not folder.work_image.exists()
    assert quota.choose_mode("poll") == "poll"
