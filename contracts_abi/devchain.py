"""A local ganache development chain (chain id 8996 unless asked) with funded dev accounts.

``Ganache`` is a context manager: it installs ganache with ``npm ci`` on first use (from the
repo's pinned package.json / package-lock.json), starts it on 127.0.0.1, waits until
``eth_chainId`` answers and, on exit, terminates it (then kills it) so no process is orphaned.
Blocks are mined instantly (no ``--miner.blockTime``).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import IO

import requests
from eth_account import Account
from eth_account.signers.local import LocalAccount

from contracts_abi.errors import DevChainError

CHAIN_ID = 8996
#: The repository root, where package.json pins ganache.
REPO_ROOT = Path(__file__).resolve().parent.parent
GANACHE_BIN = REPO_ROOT / "node_modules" / ".bin" / "ganache"
#: Wei each development account starts with (10,000 ETH).
DEV_BALANCE = 10_000 * 10**18
#: Gas price ganache reports and uses by default (2 gwei: above the London base fee).
DEFAULT_GAS_PRICE = 2_000_000_000

#: Well-known development keys (the Hardhat/Anvil test mnemonic's first accounts; public, never
#: use them on a real network), by role. Each is funded with ``DEV_BALANCE`` on the dev chain.
DEV_ACCOUNTS: dict[str, str] = {
    "deployer": "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80",
    "publisher": "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d",
    "provider": "0x5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a",
    "consumer": "0x7c852118294e51e653712a81e05800f419141751be58f605c371e15141b007a6",
    "other": "0x47e179ec197488593b187f80a00eb0da91f1b9d0b13f8733639f19c30a34926a",
}


def dev_account(name: str) -> LocalAccount:
    """The LocalAccount of the development account ``name`` (a key of ``DEV_ACCOUNTS``)."""
    account: LocalAccount = Account.from_key(DEV_ACCOUNTS[name])
    return account


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def rpc_chain_id(url: str, timeout: float = 2.0) -> int:
    """Ask ``url`` for ``eth_chainId``; raise ``requests`` errors or ValueError on failure."""
    reply = requests.post(
        url,
        json={"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": []},
        timeout=timeout,
    )
    reply.raise_for_status()
    return int(reply.json()["result"], 16)


def ensure_ganache() -> Path:
    """Return the ganache executable, running ``npm ci`` in the repo first if it is missing."""
    if GANACHE_BIN.exists():
        return GANACHE_BIN
    if shutil.which("node") is None or shutil.which("npm") is None:
        raise DevChainError("ganache needs Node.js and npm: install Node 18+ (with npm) first")
    result = subprocess.run(
        ["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0 or not GANACHE_BIN.exists():
        tail = (result.stderr or result.stdout).strip().splitlines()[-1:] or ["no output"]
        raise DevChainError(f"`npm ci` could not install ganache: {tail[0]}")
    return GANACHE_BIN


class Ganache:
    """A ganache process on ``127.0.0.1:port`` (a free port when ``port`` is None)."""

    def __init__(
        self,
        port: int | None = None,
        *,
        accounts: dict[str, str] | None = None,
        start_timeout: float = 60.0,
        chain_id: int = CHAIN_ID,
    ) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.chain_id = chain_id
        self.accounts = dict(accounts or DEV_ACCOUNTS)
        self.start_timeout = start_timeout
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    def command(self) -> list[str]:
        args = [
            str(ensure_ganache()),
            "--server.host=127.0.0.1",
            f"--server.port={self.port}",
            f"--chain.chainId={self.chain_id}",
            "--chain.hardfork=shanghai",
            f"--miner.defaultGasPrice={DEFAULT_GAS_PRICE}",
            "--logging.quiet=true",
        ]
        args += [f"--wallet.accounts={key},{DEV_BALANCE}" for key in self.accounts.values()]
        return args

    def start(self) -> Ganache:
        """Start ganache and wait until it answers ``eth_chainId``."""
        if self._proc is not None:
            return self
        command = self.command()
        self._log = tempfile.TemporaryFile()
        self._proc = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: stop() reaches every child
        )
        deadline = time.monotonic() + self.start_timeout
        while True:
            if self._proc.poll() is not None:
                output = self._output()
                self.stop()
                raise DevChainError(f"ganache exited at start-up on port {self.port}: {output}")
            try:
                if rpc_chain_id(self.url, timeout=1.0) == self.chain_id:
                    return self
            except (requests.RequestException, ValueError, KeyError):
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise DevChainError(
                    f"ganache did not answer on {self.url} in {self.start_timeout}s"
                )
            time.sleep(0.1)

    def _output(self) -> str:
        if self._log is None:
            return ""
        self._log.seek(0)
        lines = self._log.read().decode(errors="replace").strip().splitlines()
        return lines[-1] if lines else "no output"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def detach(self) -> int:
        """Leave ganache running after this process exits; return its PID (``kill`` stops it)."""
        if self._proc is None or self._proc.poll() is not None:
            raise DevChainError("ganache is not running")
        pid = self._proc.pid
        self._proc = None
        if self._log is not None:
            self._log.close()
            self._log = None
        return pid

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def stop(self, timeout: float = 10.0) -> None:
        """Terminate ganache (then kill it after ``timeout`` seconds); idempotent."""
        proc, self._proc = self._proc, None
        if proc is not None:
            if proc.poll() is None:
                self._signal(proc, signal.SIGTERM)
                try:
                    proc.wait(timeout=timeout)
                except subprocess.TimeoutExpired:
                    self._signal(proc, signal.SIGKILL)
                    proc.wait(timeout=timeout)
        if self._log is not None:
            self._log.close()
            self._log = None

    @staticmethod
    def _signal(proc: subprocess.Popen[bytes], sig: int) -> None:
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            pass

    def __enter__(self) -> Ganache:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
