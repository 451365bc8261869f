"""``tidewater serve``: one-line start-up errors, and a real gunicorn run with clean SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from contracts_abi.devchain import Ganache, free_port
from tests.provider.core_support import PROVIDER_KEY
from tidewater.cli import main


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in {"PROVIDER_PRIVATE_KEY", "NETWORK_URL"}}
    env.update({"TIDEWATER_DATA_DIR": str(tmp_path / "data")})
    env.update(extra)
    return env


def test_missing_key_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("PROVIDER_PRIVATE_KEY", raising=False)
    monkeypatch.setenv("TIDEWATER_DATA_DIR", str(tmp_path))
    assert main(["serve", "--no-engine"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "PROVIDER_PRIVATE_KEY is not set" in err


def test_unreachable_chain_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PROVIDER_PRIVATE_KEY", PROVIDER_KEY)
    monkeypatch.setenv("NETWORK_URL", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("TIDEWATER_DATA_DIR", str(tmp_path))
    assert main(["serve", "--no-engine"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "is unreachable" in err and "NETWORK_URL=" in err


@pytest.mark.parametrize("flags", [["--workers-proc", "0"], ["--port", "70000"]])
def test_bad_flags_are_one_line(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    flags: list[str],
) -> None:
    monkeypatch.setenv("PROVIDER_PRIVATE_KEY", PROVIDER_KEY)
    monkeypatch.setenv("TIDEWATER_DATA_DIR", str(tmp_path))
    assert main(["serve", *flags]) == 2
    assert "\n" not in capsys.readouterr().err.strip()


@pytest.mark.integration
@pytest.mark.parametrize("engine_flag", [["--no-engine"], []], ids=["api-only", "with-engine"])
def test_serve_answers_logs_json_and_stops_on_sigterm(
    tmp_path: Path,
    ganache: Ganache,
    address_file: Path,
    deployed: dict[str, Any],
    docker_client: object,
    engine_flag: list[str],
) -> None:
    port = free_port()
    env = _env(
        tmp_path,
        PROVIDER_PRIVATE_KEY=PROVIDER_KEY,
        NETWORK_URL=ganache.url,
        ADDRESS_FILE=str(address_file),
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "tidewater.cli", "serve", "--port", str(port), *engine_flag],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                reply = requests.get(base + "/", timeout=2, headers={"X-Request-Id": "serve-1"})
                break
            except requests.ConnectionError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"serve did not start: {proc.communicate()[1][-2000:]}")
                time.sleep(0.2)
        assert reply.status_code == 200
        assert reply.json()["chainIds"] == [ganache.chain_id]
        assert reply.headers["X-Request-Id"] == "serve-1"
        assert reply.headers["Access-Control-Allow-Origin"] == "*"
        envs = requests.get(base + "/api/services/computeEnvironments", timeout=5)
        assert envs.status_code == 200
        (free,) = envs.json()[str(ganache.chain_id)]
        assert free["feeToken"] == deployed["Ocean"]  # a real ERC-20, never the zero address
        scraped = requests.get(base + "/metrics", timeout=5)
        assert scraped.status_code == 200
        families = {f.name: f for f in text_string_to_metric_families(scraped.text)}
        answered = {
            (s.labels["route"], s.labels["status"]): s.value
            for s in families["tidewater_http_requests"].samples
            if s.name.endswith("_total")
        }
        assert answered[("/", "200")] >= 1  # merged from the gunicorn worker's samples
        assert "tidewater_queue_depth" in families
        if not engine_flag:  # the engine process's samples are merged too (2 worker threads)
            deadline = time.monotonic() + 60
            while _engine_workers(base) != 2:
                assert time.monotonic() < deadline, "the engine's workers never showed"
                time.sleep(0.2)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            _out, err = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            pytest.fail("serve did not stop within 60 s of SIGTERM")
    assert proc.returncode == 0, err[-2000:]
    access = [
        json.loads(line)
        for line in err.splitlines()
        if line.startswith("{") and '"tidewater.access"' in line
    ]
    assert any(a["request_id"] == "serve-1" and a["path"] == "/" for a in access), err[-2000:]


@pytest.mark.integration
def test_fee_token_without_code_is_refused_at_start(
    tmp_path: Path, ganache: Ganache, address_file: Path
) -> None:
    envs = tmp_path / "envs.json"
    envs.write_text(json.dumps([{"id": "paid", "priceMin": 1, "feeToken": "0x" + "de" * 20}]))
    env = _env(
        tmp_path,
        PROVIDER_PRIVATE_KEY=PROVIDER_KEY,
        NETWORK_URL=ganache.url,
        ADDRESS_FILE=str(address_file),
        TIDEWATER_ENVIRONMENTS=str(envs),
    )
    done = subprocess.run(
        [sys.executable, "-m", "tidewater.cli", "serve", "--no-engine", "--port", str(free_port())],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    err = done.stderr.strip()
    assert done.returncode == 2 and "\n" not in err, err
    assert "'paid'" in err and "has no contract code on chain" in err


def _engine_workers(base: str) -> float:
    scraped = requests.get(base + "/metrics", timeout=5).text
    for family in text_string_to_metric_families(scraped):
        if family.name == "tidewater_engine_workers":
            return sum(sample.value for sample in family.samples)
    return 0.0


def test_malformed_environments_file_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    envs = tmp_path / "envs.json"
    envs.write_text('[{"id": 5}]')
    monkeypatch.setenv("PROVIDER_PRIVATE_KEY", PROVIDER_KEY)
    monkeypatch.setenv("TIDEWATER_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("TIDEWATER_ENVIRONMENTS", str(envs))
    assert main(["serve"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "id is missing" in err
