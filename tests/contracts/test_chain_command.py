"""``tidewater chain``: a real ganache with the contracts deployed, and its one-line errors."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from eth_account import Account
from web3 import Web3

from contracts_abi.artifacts import contract
from contracts_abi.deploy import read_address_file
from contracts_abi.devchain import DEV_ACCOUNTS, Ganache, free_port, rpc_chain_id
from tidewater.cli import main

ROOT = Path(__file__).resolve().parents[2]


def _chain_command(*args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "TIDEWATER_DATA_DIR": "/nonexistent-unused"}
    return subprocess.Popen(
        [sys.executable, "-m", "tidewater.cli", "chain", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _read_until(proc: subprocess.Popen[str], marker: str, timeout: float = 120) -> str:
    assert proc.stdout is not None
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        seen.append(line)
        if marker in line:
            return "".join(seen)
    proc.kill()
    raise AssertionError(
        f"no {marker!r} in output: {''.join(seen)} {proc.stderr.read() if proc.stderr else ''}"
    )


def _answers(url: str) -> bool:
    try:
        rpc_chain_id(url, timeout=1.0)
    except requests.RequestException:
        return False
    return True


@pytest.mark.integration
def test_chain_runs_until_sigterm(tmp_path: Path, ganache: Ganache) -> None:
    # ``ganache`` only proves node/ganache are available (skips or fails the test otherwise)
    port = free_port()
    address_file = tmp_path / "address.json"
    proc = _chain_command("--port", str(port), "--address-file", str(address_file))
    try:
        output = _read_until(proc, "press Ctrl-C to stop")
        url = f"http://127.0.0.1:{port}"
        reply = requests.post(
            url, json={"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": []}, timeout=5
        )
        assert reply.json()["result"] == "0x2324"
        assert f"address file: {address_file}" in output
        assert f"export NETWORK_URL={url} PROVIDER_PRIVATE_KEY={DEV_ACCOUNTS['provider']}" in output
        entry = read_address_file(address_file, 8996)
        assert entry["ERC721Factory"] in output
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
        assert not _answers(url)  # ganache stopped with it
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _stop_pid(pid: int, url: str) -> None:
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 10
    while _answers(url) and time.monotonic() < deadline:
        time.sleep(0.1)


@pytest.mark.integration
def test_chain_no_wait_leaves_ganache_running_with_a_pid_file(
    tmp_path: Path, ganache: Ganache
) -> None:
    """Two chains (8996, then --chain-id 58008) share one address file: each adds its entry."""
    address_file = tmp_path / "address.json"
    started: dict[int, tuple[int, str]] = {}
    try:
        for chain_id, extra, pid_name in (
            (8996, [], "ganache.pid"),
            (58008, ["--chain-id", "58008"], "ganache-58008.pid"),
        ):
            port = free_port()
            url = f"http://127.0.0.1:{port}"
            argv = ["--port", str(port), "--address-file", str(address_file), "--no-wait"]
            proc = _chain_command(*argv, *extra)
            stdout, stderr = proc.communicate(timeout=120)
            pid_file = tmp_path / pid_name
            if pid_file.exists():
                started[chain_id] = (int(pid_file.read_text()), url)
            assert proc.returncode == 0, stderr
            assert chain_id in started and f"pid {started[chain_id][0]}" in stdout
            assert rpc_chain_id(url) == chain_id
            assert f"(chain id {chain_id})" in stdout
            if chain_id == 58008:  # says how to serve both
                assert "the address file also holds chain 8996" in stdout
                assert f'"58008": "{url}"' in stdout
        for chain_id in started:  # the second run kept the first chain's entry
            assert read_address_file(address_file, chain_id)["chainId"] == chain_id
    finally:
        for pid, url in started.values():
            _stop_pid(pid, url)
    assert not any(_answers(url) for _pid, url in started.values())


@pytest.mark.integration
def test_chain_deploys_to_an_existing_rpc(
    tmp_path: Path, ganache: Ganache, capsys: pytest.CaptureFixture[str]
) -> None:
    address_file = tmp_path / "address.json"
    payee = Account.create().address  # an escrow payee wallet with no gas yet
    argv = ["chain", "--rpc", ganache.url, "--deployer-key", DEV_ACCOUNTS["other"]]
    assert main([*argv, "--address-file", str(address_file), "--payee", payee]) == 0
    out = capsys.readouterr().out
    assert f"export NETWORK_URL={ganache.url} ADDRESS_FILE={address_file}" in out
    assert "PROVIDER_PRIVATE_KEY=0x" not in out  # no dev keys printed for a foreign chain
    entry = read_address_file(address_file, 8996)
    assert entry["ERC721Factory"]
    assert entry["Escrow"] in out  # deployed, under the key ocean.js 8 reads
    w3 = Web3(Web3.HTTPProvider(ganache.url))
    assert (
        contract(w3, "Escrow", entry["Escrow"]).functions.factoryRouter().call()
        == (entry["Router"])
    )
    assert f"escrow payee {payee}: sent 1 ETH" in out
    assert w3.eth.get_balance(payee) == 10**18


def _one_line_error(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("tidewater chain: error: ") and "\n" not in err
    return err


def test_unreachable_rpc_is_one_line(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    argv = ["chain", "--rpc", url, "--deployer-key", DEV_ACCOUNTS["other"]]
    err = _one_line_error(capsys, [*argv, "--address-file", str(tmp_path / "a.json")])
    assert f"cannot reach the chain at {url}" in err


def test_rpc_without_key_is_one_line(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("DEPLOYER_PRIVATE_KEY", raising=False)
    argv = ["chain", "--rpc", "http://127.0.0.1:9", "--address-file", str(tmp_path / "a.json")]
    assert "DEPLOYER_PRIVATE_KEY" in _one_line_error(capsys, argv)


@pytest.mark.parametrize("key", ["0x1234", "not-a-key", "0x" + "g" * 64])
def test_malformed_key_is_one_line(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path, key: str
) -> None:
    monkeypatch.setenv("DEPLOYER_PRIVATE_KEY", key)
    argv = ["chain", "--rpc", "http://127.0.0.1:9", "--address-file", str(tmp_path / "a.json")]
    err = _one_line_error(capsys, argv)
    assert "deployer key" in err and key not in err  # never echo key material


def test_malformed_address_file_is_one_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    bad = tmp_path / "address.json"
    bad.write_text("{oops")
    err = _one_line_error(capsys, ["chain", "--port", "1", "--address-file", str(bad)])
    assert "not valid JSON" in err
    assert bad.read_text() == "{oops"  # left untouched


def test_bad_chain_id_is_one_line(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    argv = ["chain", "--chain-id", "0", "--address-file", str(tmp_path / "a.json")]
    assert "--chain-id 0 is not a chain id" in _one_line_error(capsys, argv)


def test_malformed_payee_is_one_line(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    argv = ["chain", "--port", "1", "--address-file", str(tmp_path / "a.json")]
    assert "--payee" in _one_line_error(capsys, [*argv, "--payee", "0x123"])


def test_port_in_use_is_one_line(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        argv = ["chain", "--port", str(port), "--address-file", str(tmp_path / "a.json")]
        assert "already in use" in _one_line_error(capsys, argv)
