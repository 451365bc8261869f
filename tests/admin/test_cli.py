"""`tidewater admin` over real HTTP (a local werkzeug server) and tokens on the store."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from werkzeug.serving import make_server

from tidewater.cli import main
from tidewater.commands.admin import table


@pytest.fixture
def url(app: Flask) -> Iterator[str]:
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join()


def test_table_aligns() -> None:
    assert table(("A", "BB"), [("xxx", None), ("y", 2)]).splitlines() == [
        "A    BB",
        "xxx  -",
        "y    2",
    ]


def test_env_and_batch_commands(url: str, token: str, capsys: pytest.CaptureFixture[str]) -> None:
    base = ["admin", "--url", url, "--token", token]
    assert main([*base, "envs", "create", "small", "--cpu", "2", "--max-jobs", "1"]) == 0
    assert capsys.readouterr().out.strip() == "small"
    assert main([*base, "envs", "update", "small", "--cpu", "2", "--max-jobs", "3"]) == 0
    assert main([*base, "envs", "list"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[1].split()[0] == "ID" and "small" in out[-1]
    assert main([*base, "envs", "show", "small"]) == 0
    assert '"maxJobs": 3' in capsys.readouterr().out
    assert main([*base, "envs", "primary", "small"]) == 0
    assert main([*base, "batches", "list"]) == 0
    assert main([*base, "batches", "show", "small"]) == 0
    assert "submitted" in capsys.readouterr().out
    assert main([*base, "batches", "jobs", "small"]) == 0
    assert main([*base, "envs", "delete", "small"]) == 0
    capsys.readouterr()
    assert main([*base, "envs", "show", "small"]) == 2
    assert "HTTP 404" in capsys.readouterr().err
    assert main([*base, "envs", "create", "bad", "--max-jobs", "0"]) == 2
    assert "maxJobs" in capsys.readouterr().err


def test_errors_are_one_line(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["admin", "--url", url, "--token", "nope", "envs", "list"]) == 2
    err = capsys.readouterr().err
    assert "HTTP 403" in err and err.count("\n") == 1
    assert main(["admin", "--url", "http://127.0.0.1:9", "--token", "x", "envs", "list"]) == 2
    assert "cannot reach" in capsys.readouterr().err


def test_token_commands_use_the_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("TIDEWATER_DB", f"sqlite:///{tmp_path / 'tok.db'}")
    assert main(["admin", "token", "create", "--name", "ops"]) == 0
    token = capsys.readouterr().out.strip()
    assert token.startswith("tw_") and len(token) > 40
    assert main(["admin", "token", "list"]) == 0
    listing = capsys.readouterr().out
    assert "ops" in listing and token not in listing
    assert main(["admin", "token", "revoke", "ops"]) == 0
    assert main(["admin", "token", "revoke", "ops"]) == 2
