"""The internal transfer endpoints' refusals (fast layer: job folders made by hand)."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest
from flask.testing import FlaskClient

from operator_engine import transfer_tokens
from operator_engine.transfer_tar import stream

# fixtures: the provider app on a real engine (fake runner)
from tests.provider.core_support import (  # noqa: F401
    app_fixture,
    client_fixture,
    engine_fixture,
    settings_fixture,
)
from tidewater.settings import Settings

JOB = "a1b2c3"


def _tar(members: dict[str, bytes], *, link: str | None = None) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
        if link is not None:
            info = tarfile.TarInfo(link)
            info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
            archive.addfile(info)
    return buffer.getvalue()


@pytest.fixture(name="job_root")
def job_root_fixture(settings: Settings) -> Path:
    root = Path(settings.data_dir).resolve() / "jobs" / JOB
    (root / "inputs" / "did1").mkdir(parents=True)
    (root / "inputs" / "did1" / "0").write_bytes(b"a,b\n1,2\n")
    (root / "transformations").mkdir()
    (root / "transformations" / "algorithm").write_bytes(b"print('hi')\n")
    (root / "ddos").mkdir()
    (root / "ddos" / "did1").write_text("{}")
    (root / "outputs").mkdir()
    return root


def _token(settings: Settings, direction: str = "inputs", **kw: object) -> dict[str, str]:
    token = transfer_tokens.mint(settings.data_dir, JOB, direction, 60, **kw)  # type: ignore[arg-type]
    return {"Authorization": f"Bearer {token}"}


def test_inputs_stream_the_staged_folders_once(
    client: FlaskClient, settings: Settings, job_root: Path
) -> None:
    auth = _token(settings)
    reply = client.get(f"/internal/jobs/{JOB}/inputs", headers=auth)
    assert reply.status_code == 200 and reply.mimetype == "application/x-tar"
    with tarfile.open(fileobj=io.BytesIO(reply.data)) as archive:
        names = archive.getnames()
        data = archive.extractfile("inputs/did1/0")
        assert data is not None and data.read() == b"a,b\n1,2\n"
    assert "transformations/algorithm" in names and "ddos/did1" in names
    replay = client.get(f"/internal/jobs/{JOB}/inputs", headers=auth)
    assert replay.status_code == 409 and replay.json == {
        "error": "this transfer token was already used",
        "code": "token_used",
    }


@pytest.mark.parametrize(
    ("headers", "status", "code"),
    [
        ({}, 401, "no_token"),
        ({"Authorization": "Bearer nope"}, 401, "unknown_token"),
        ({"Authorization": "Basic abc"}, 401, "no_token"),
    ],
)
def test_inputs_need_a_token(
    client: FlaskClient, job_root: Path, headers: dict[str, str], status: int, code: str
) -> None:
    reply = client.get(f"/internal/jobs/{JOB}/inputs", headers=headers)
    assert reply.status_code == status and reply.json is not None
    assert reply.json["code"] == code and reply.json["error"]


def test_a_token_is_scoped_to_its_job_and_direction(
    client: FlaskClient, settings: Settings, job_root: Path
) -> None:
    other = transfer_tokens.mint(settings.data_dir, "another", "inputs", 60)
    reply = client.get(f"/internal/jobs/{JOB}/inputs", headers={"Authorization": f"Bearer {other}"})
    assert reply.status_code == 403 and reply.json["code"] == "wrong_scope"  # type: ignore[index]
    outputs_token = _token(settings, "outputs", max_bytes=100)
    reply = client.get(f"/internal/jobs/{JOB}/inputs", headers=outputs_token)
    assert reply.status_code == 403


def test_expired_and_unknown_job(client: FlaskClient, settings: Settings, job_root: Path) -> None:
    expired = transfer_tokens.mint(settings.data_dir, JOB, "inputs", -1)
    reply = client.get(
        f"/internal/jobs/{JOB}/inputs", headers={"Authorization": f"Bearer {expired}"}
    )
    assert reply.status_code == 401 and reply.json["code"] == "token_expired"  # type: ignore[index]
    for path in ("/internal/jobs/nojob/inputs", "/internal/jobs/..%2f..%2fetc/inputs"):
        assert client.get(path, headers=_token(settings)).status_code == 404


def test_outputs_wait_for_the_engine_then_land_once(
    client: FlaskClient, settings: Settings, job_root: Path
) -> None:
    token = transfer_tokens.mint(settings.data_dir, JOB, "outputs", 60, armed=False, max_bytes=1000)
    auth = {"Authorization": f"Bearer {token}"}
    body = _tar({"outputs/r.txt": b"result\n", "outputs/sub/s.txt": b"s"})
    early = client.put(f"/internal/jobs/{JOB}/outputs", data=body, headers=auth)
    assert early.status_code == 409 and early.json["code"] == "not_armed"  # type: ignore[index]
    transfer_tokens.arm(settings.data_dir, token)
    done = client.put(f"/internal/jobs/{JOB}/outputs", data=body, headers=auth)
    assert done.status_code == 200 and done.json == {"jobId": JOB, "files": 2, "bytes": 8}
    assert (job_root / "outputs" / "r.txt").read_bytes() == b"result\n"
    assert client.put(f"/internal/jobs/{JOB}/outputs", data=body, headers=auth).status_code == 409
    again = client.put(
        f"/internal/jobs/{JOB}/outputs", data=body, headers=_token(settings, "outputs")
    )
    assert again.status_code == 409 and again.json["code"] == "already_received"  # type: ignore[index]


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        (_tar({"outputs/big.bin": b"x" * 2000}), 413, "too_large"),
        (_tar({"/etc/evil": b"x"}), 400, "bad_tar"),
        (_tar({"outputs/../../evil": b"x"}), 400, "bad_tar"),
        (_tar({"logs/algorithm.log": b"forged"}), 400, "bad_tar"),
        (_tar({}, link="outputs/link"), 400, "bad_tar"),
        (b"not a tar at all" * 100, 400, "bad_tar"),
    ],
)
def test_bad_outputs_are_refused_and_leave_nothing(
    client: FlaskClient, settings: Settings, job_root: Path, body: bytes, status: int, code: str
) -> None:
    auth = _token(settings, "outputs", max_bytes=1000)
    reply = client.put(f"/internal/jobs/{JOB}/outputs", data=body, headers=auth)
    assert reply.status_code == status and reply.json["code"] == code  # type: ignore[index]
    assert sorted(p.name for p in job_root.iterdir()) == [
        "ddos",
        "inputs",
        "outputs",
        "transformations",
    ]
    assert list((job_root / "outputs").iterdir()) == []
    assert not (Path(settings.data_dir).parent / "evil").exists()


def test_stream_is_a_tar_that_tarfile_reads(tmp_path: Path) -> None:
    (tmp_path / "outputs" / "a").mkdir(parents=True)
    (tmp_path / "outputs" / "a" / "f").write_bytes(b"z" * 1000)
    (tmp_path / "outputs" / "link").symlink_to("/etc/passwd")
    body = b"".join(stream(tmp_path, ("outputs", "missing")))
    with tarfile.open(fileobj=io.BytesIO(body)) as archive:
        assert archive.getnames() == ["outputs", "outputs/a", "outputs/a/f"]
