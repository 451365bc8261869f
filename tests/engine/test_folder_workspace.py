"""The folder workspace of the Docker and fake backends: names stay inside the job's volumes,
nothing is followed through a link, a failed stage leaves nothing behind."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from operator_engine.backends.folder import FolderWorkspace
from operator_engine.workspace import JobFolder, UnsafeName


@pytest.fixture
def workspace(tmp_path: Path) -> FolderWorkspace:
    ws = FolderWorkspace(JobFolder(tmp_path / "jobs" / "job1"))
    ws.create()
    return ws


def test_staged_files_land_in_their_volume_with_size_and_digest(workspace: FolderWorkspace) -> None:
    size, sha = workspace.stage("inputs", "abc/0", [b"12", b"34"])
    assert (size, sha) == (4, hashlib.sha256(b"1234").hexdigest())
    assert (workspace.path("inputs") / "abc" / "0").read_bytes() == b"1234"
    workspace.stage("algorithm", "algorithm", [b"echo hi"], executable=True)
    assert (workspace.path("algorithm") / "algorithm").stat().st_mode & 0o777 == 0o755
    assert workspace.input_digests("abc") == [sha]
    assert workspace.input_digests("absent") == []


@pytest.mark.parametrize("name", ["../escape", "a/../../b", "/abs", "", "a//b", "."])
def test_names_that_leave_the_volume_are_refused(workspace: FolderWorkspace, name: str) -> None:
    with pytest.raises(UnsafeName):
        workspace.stage("inputs", name, [b"x"])
    with pytest.raises(UnsafeName):
        workspace.result("outputs", name)


def test_only_input_volumes_are_staged_and_only_outputs_and_logs_are_results(
    workspace: FolderWorkspace,
) -> None:
    with pytest.raises(ValueError, match="not an input volume"):
        workspace.stage("outputs", "x", [b"x"])
    with pytest.raises(ValueError, match="holds no results"):
        workspace.result("inputs", "x")


def test_a_failed_stage_leaves_nothing(workspace: FolderWorkspace) -> None:
    def chunks() -> Iterator[bytes]:
        yield b"partial"
        raise RuntimeError("download broke")

    with pytest.raises(RuntimeError, match="download broke"):
        workspace.stage("inputs", "abc/0", chunks())
    assert list((workspace.path("inputs") / "abc").iterdir()) == []


def test_results_are_never_read_through_a_link(workspace: FolderWorkspace, tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text("host file")
    (workspace.path("outputs") / "link").symlink_to(secret)
    (workspace.path("outputs") / "real.txt").write_text("ok")
    with pytest.raises(OSError):
        workspace.result("outputs", "link")
    stored = workspace.result("outputs", "real.txt")
    assert (stored.rel, stored.size) == ("outputs/real.txt", 2)
    kept, dropped = workspace.outputs()
    assert kept == [("real.txt", 2)] and dropped[0].startswith("link: symbolic link")


def test_put_result_stores_beside_the_volumes(workspace: FolderWorkspace) -> None:
    stored = workspace.put_result("receipt.json", b"{}")
    assert (stored.rel, stored.size, stored.sha256) == (
        "receipt.json",
        2,
        hashlib.sha256(b"{}").hexdigest(),
    )
    assert (workspace.folder.root / "receipt.json").stat().st_mode & 0o777 == 0o600
    workspace.remove_inputs()
    assert workspace.exists() and not workspace.path("inputs").exists()
    workspace.remove()
    assert not workspace.exists()
