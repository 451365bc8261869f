"""``tidewater chain``: a development chain with the real Ocean V4 contracts deployed.

Starts ganache (chain id 8996, funded well-known dev accounts) or attaches to ``--rpc URL``
with a funded deployer key, deploys the Ocean V4 stack (and the C2D v2 ``Escrow``) from
``ocean-contracts``' artifacts, writes the Ocean address.json, gives the provider's payee
wallet gas for escrow locks and claims (the ``PROVIDER_PRIVATE_KEY`` account, the dev
provider on ganache, and every ``--payee``), prints what a provider needs (``export
NETWORK_URL=…``) and keeps ganache running until Ctrl-C / SIGTERM (or exits at once with
``--no-wait``).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import time
from pathlib import Path
from types import FrameType
from typing import Any

import requests
from eth_account import Account
from eth_account.signers.local import LocalAccount
from web3 import Web3

from contracts_abi.deploy import (
    deploy_stack,
    fund_gas,
    read_address_file,
    write_address_file,
)
from contracts_abi.devchain import CHAIN_ID, DEV_ACCOUNTS, Ganache, dev_account, rpc_chain_id
from contracts_abi.errors import AddressFileError, ContractsError, DevChainError
from tidewater.errors import CommandError
from tidewater.settings import Settings, normalize_private_key

HELP = "start a dev chain (ganache) with the Ocean V4 contracts deployed and write address.json"

_SHOWN = ("Ocean", "Router", "ERC721Factory", "FixedPrice", "Dispenser", "Escrow")


class _Stop(Exception):
    pass


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--port", type=int, default=8545, help="ganache port (default 8545)")
    parser.add_argument(
        "--host", default="127.0.0.1", help="address ganache binds (default 127.0.0.1)"
    )
    parser.add_argument(
        "--chain-id",
        type=int,
        default=CHAIN_ID,
        help=f"chain id of the ganache started here (default {CHAIN_ID}); run one "
        "`tidewater chain` per chain, each on its own --port, sharing one --address-file",
    )
    parser.add_argument(
        "--rpc", metavar="URL", help="deploy to this running chain instead of starting ganache"
    )
    parser.add_argument(
        "--deployer-key",
        metavar="HEX",
        help="funded 0x-hex key that deploys with --rpc (default: $DEPLOYER_PRIVATE_KEY)",
    )
    parser.add_argument(
        "--address-file",
        metavar="PATH",
        type=Path,
        help="where to write Ocean's address.json (default: $ADDRESS_FILE)",
    )
    parser.add_argument(
        "--payee",
        metavar="ADDRESS",
        action="append",
        default=[],
        help="another escrow payee wallet (an environment's consumerAddress) to give gas; "
        "the PROVIDER_PRIVATE_KEY account always gets some",
    )
    parser.add_argument(
        "--no-wait",
        action="store_true",
        help="deploy and exit; a ganache started here keeps running in the background "
        "(its PID is printed and written next to the address file as ganache.pid, "
        "or ganache-<chain id>.pid for another --chain-id)",
    )


def _say(text: str = "") -> None:
    print(text, flush=True)


def _attach(url: str, key_arg: str | None) -> tuple[Web3, LocalAccount]:
    raw = key_arg or os.environ.get("DEPLOYER_PRIVATE_KEY") or ""
    if not raw.strip():
        raise CommandError(
            "--rpc needs a funded deployer key: pass --deployer-key or set DEPLOYER_PRIVATE_KEY"
        )
    key = normalize_private_key(raw, "the deployer key (--deployer-key / DEPLOYER_PRIVATE_KEY)")
    try:
        rpc_chain_id(url, timeout=5.0)
    except (requests.RequestException, ValueError, KeyError) as exc:
        raise CommandError(f"cannot reach the chain at {url}: {type(exc).__name__}") from None
    w3 = Web3(Web3.HTTPProvider(url, request_kwargs={"timeout": 60}))
    deployer = Account.from_key(key)
    if w3.eth.get_balance(deployer.address) == 0:
        raise CommandError(f"deployer {deployer.address} has no funds on {url}")
    return w3, deployer


def _port_is_free(port: int) -> bool:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _print_summary(
    url: str, chain_id: int, address_file: Path, addresses: dict[str, Any], dev: bool
) -> None:
    _say(f"chain: {url} (chain id {chain_id})")
    _say(f"address file: {address_file}")
    for name in _SHOWN:
        _say(f"  {name:<14} {addresses[name]}")
    if dev:
        _say("development accounts (public test keys: never use them on a real network):")
        for name, key in DEV_ACCOUNTS.items():
            _say(f"  {name:<10} {dev_account(name).address}  {key}")
        _say(
            f"export NETWORK_URL={url} PROVIDER_PRIVATE_KEY={DEV_ACCOUNTS['provider']} "
            f"ADDRESS_FILE={address_file}"
        )
    else:
        _say(f"export NETWORK_URL={url} ADDRESS_FILE={address_file}")
        _say("(and PROVIDER_PRIVATE_KEY=<the provider's funded key on this chain>)")
    others = [c for c in _chain_ids(address_file) if c != chain_id]
    if others:
        urls = ", ".join(f'"{c}": "<its RPC URL>"' for c in others)
        _say(f"the address file also holds chain {', '.join(map(str, others))}: to serve all,")
        _say(f"""export NETWORK_URL='{{{urls}, "{chain_id}": "{url}"}}'""")


def _chain_ids(address_file: Path) -> list[int]:
    """The chain ids of the entries in ``address_file`` (empty when it cannot be read)."""
    try:
        document = json.loads(address_file.read_text())
    except (OSError, ValueError):
        return []
    entries = document.values() if isinstance(document, dict) else []
    ids = [str(e.get("chainId")) for e in entries if isinstance(e, dict)]
    return [int(text) for text in ids if text.isdigit()]


def _payees(args: argparse.Namespace, settings: Settings, dev: bool) -> list[str]:
    """The escrow payee wallets to give gas: ``--payee``, the provider key's account, and on
    the dev chain the dev provider account."""
    wanted = list(args.payee)
    for address in wanted:
        if not Web3.is_address(address):
            raise CommandError(f"--payee {address!r} is not an address (0x + 40 hex digits)")
    keys = list(settings.provider_private_keys.values())
    if settings.provider_private_key:
        keys.append(settings.provider_private_key)
    if keys:
        wanted += [Account.from_key(key).address for key in keys]
    elif dev:
        wanted.append(dev_account("provider").address)
    unique: dict[str, str] = {}
    for address in wanted:
        unique.setdefault(address.lower(), Web3.to_checksum_address(address))
    return list(unique.values())


def _fund_payees(w3: Web3, deployer: LocalAccount, payees: list[str]) -> None:
    for address in payees:
        sent = fund_gas(w3, deployer, address)
        balance = w3.eth.get_balance(Web3.to_checksum_address(address)) / 10**18
        note = f"sent {sent / 10**18:g} ETH" if sent else f"has {balance:g} ETH"
        _say(f"escrow payee {address}: {note} (gas for escrow locks and claims)")


def _check_address_file(path: Path) -> None:
    # Refuse to overwrite a malformed file the user may care about.
    if path.exists():
        try:
            read_address_file(path, -1)
        except AddressFileError as exc:
            if "no entry for chain id" not in str(exc):
                raise CommandError(str(exc)) from None


def _wait(chain: Ganache) -> None:
    def stop(signum: int, frame: FrameType | None) -> None:
        raise _Stop

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        # announced inside the try: a SIGTERM right after the line is a clean stop
        _say("ganache running: press Ctrl-C to stop")
        while chain.running:
            time.sleep(0.5)
        raise CommandError("ganache exited unexpectedly")
    except (_Stop, KeyboardInterrupt):
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)


def run(args: argparse.Namespace) -> int:
    if args.chain_id <= 0:
        raise CommandError(f"--chain-id {args.chain_id} is not a chain id (a positive integer)")
    settings = Settings.from_env()
    address_file = Path(args.address_file or settings.address_file).expanduser().resolve()
    _check_address_file(address_file)
    payees = _payees(args, settings, dev=not args.rpc)
    if args.rpc:
        w3, deployer = _attach(args.rpc, args.deployer_key)
        url, chain = args.rpc, None
    else:
        if not 0 < args.port < 65536:
            raise CommandError(f"--port {args.port} is not a TCP port")
        if not _port_is_free(args.port):
            raise CommandError(f"port {args.port} is already in use: pick another with --port")
        chain = Ganache(args.port, chain_id=args.chain_id)
        try:
            chain.start()
        except DevChainError as exc:
            raise CommandError(str(exc)) from None
        url = chain.url
        w3 = Web3(Web3.HTTPProvider(url, request_kwargs={"timeout": 60}))
        deployer = dev_account("deployer")
    try:
        chain_id = w3.eth.chain_id
        addresses = deploy_stack(w3, deployer)
        write_address_file(address_file, addresses, chain_id)
        _print_summary(url, chain_id, address_file, addresses, dev=chain is not None)
        _fund_payees(w3, deployer, payees)
        if chain is None:
            return 0
        if args.no_wait:
            pid = chain.detach()
            suffix = "" if chain_id == CHAIN_ID else f"-{chain_id}"
            pid_file = address_file.parent / f"ganache{suffix}.pid"
            pid_file.write_text(f"{pid}\n")
            _say(f"ganache left running: pid {pid} (written to {pid_file}; stop: kill {pid})")
            return 0
        _wait(chain)
        return 0
    except (ContractsError, requests.RequestException) as exc:
        raise CommandError(f"deploying the Ocean contracts failed: {exc}") from None
    finally:
        if chain is not None:
            chain.stop()
