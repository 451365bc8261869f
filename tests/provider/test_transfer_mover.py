"""The in-pod mover's waiting rules, against the real provider app on loopback: the offline
gate, and a push that waits for the engine to arm its token."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from werkzeug.serving import make_server

from operator_engine import transfer, transfer_tokens

# fixtures: the provider app on a real engine (fake runner)
from tests.provider.core_support import (  # noqa: F401
    app_fixture,
    engine_fixture,
    settings_fixture,
)
from tidewater.settings import Settings

JOB = "f00d"


@pytest.fixture(autouse=True)
def quick_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(transfer, "RETRY_SECONDS", 0.02)


@pytest.fixture(name="served")
def served_fixture(app: Flask) -> Iterator[dict[str, Any]]:
    refusals: list[int] = []

    def counting(environ: dict[str, Any], start_response: Any) -> Any:
        def start(status: str, headers: Any, *rest: Any) -> Any:
            if status.startswith("409"):
                refusals.append(409)
            return start_response(status, headers, *rest)

        return app.wsgi_app(environ, start)

    server = make_server("127.0.0.1", 0, counting, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield {"url": f"http://127.0.0.1:{server.port}", "refusals": refusals}
    server.shutdown()
    thread.join(timeout=10)


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def labels(tmp_path: Path, value: str) -> Path:
    path = tmp_path / "labels"
    path.write_text(f'tidewater.job_id="{JOB}"\ntidewater.io/network="{value}"\n')
    return path


def test_the_gate_opens_only_when_closed_and_unreachable(
    tmp_path: Path, served: dict[str, Any]
) -> None:
    unreachable = f"http://127.0.0.1:{closed_port()}"
    transfer.offline(unreachable, labels(tmp_path, "closed"), wait=5)
    with pytest.raises(transfer.TransferFailed):  # the label still says transfer
        transfer.offline(unreachable, labels(tmp_path, "transfer"), wait=0.1)
    with pytest.raises(transfer.TransferFailed):  # closed by label, yet the provider answers
        transfer.offline(served["url"], labels(tmp_path, "closed"), wait=0.1)


def test_push_waits_for_the_engine_to_arm_its_token(
    tmp_path: Path, settings: Settings, served: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    root = Path(settings.data_dir).resolve() / "jobs" / JOB
    (root / "outputs").mkdir(parents=True)
    source = tmp_path / "pod"
    (source / "outputs").mkdir(parents=True)
    (source / "outputs" / "r.csv").write_text("1,2\n")
    (source / "logs").mkdir()
    (source / "logs" / "mine.log").write_text("not a result\n")
    token = transfer_tokens.mint(settings.data_dir, JOB, "outputs", 60, armed=False, max_bytes=99)
    monkeypatch.setenv(transfer.TOKEN_ENV, token)
    answer: dict[str, Any] = {}
    pusher = threading.Thread(
        target=lambda: answer.update(transfer.push(served["url"], JOB, source, wait=60))
    )
    pusher.start()
    while not served["refusals"] and pusher.is_alive():  # refused (not armed) at least once
        pusher.join(timeout=0.02)
    transfer_tokens.arm(settings.data_dir, token)
    pusher.join(timeout=60)
    assert answer == {"jobId": JOB, "files": 1, "bytes": 4}
    assert (root / "outputs" / "r.csv").read_text() == "1,2\n"
    assert not (root / "logs").exists()


def test_pull_refusal_is_one_line(
    tmp_path: Path, settings: Settings, served: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(transfer.TOKEN_ENV, "wrong")
    code = transfer.main(
        [
            "pull",
            "--url",
            served["url"],
            "--job",
            JOB,
            "--dest",
            str(tmp_path / "d"),
            "--max-bytes",
            "10",
            "--wait",
            "5",
        ]
    )
    assert code == 1
    monkeypatch.delenv(transfer.TOKEN_ENV)
    assert (
        transfer.main(["offline", "--url", served["url"], "--labels", "/nope", "--wait", "0"]) == 1
    )
