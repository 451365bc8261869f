"""The Ocean V4 contract artifacts (ABI + bytecode), read from the ``ocean-contracts`` package.

The package installs a top-level ``artifacts`` package of Hardhat JSON files; we locate it with
importlib so the ABIs always match the installed contracts (never hand-copied).
"""

from __future__ import annotations

import difflib
import functools
import importlib.resources
import json
from dataclasses import dataclass
from typing import Any

from web3 import Web3
from web3.contract import Contract

_PACKAGE = "artifacts"


@dataclass(frozen=True)
class Artifact:
    """One compiled contract: its ``name``, ``abi`` and creation ``bytecode`` (0x hex)."""

    name: str
    abi: list[dict[str, Any]]
    bytecode: str


@functools.cache
def names() -> tuple[str, ...]:
    """Every contract name the installed ``ocean-contracts`` ships, sorted."""
    root = importlib.resources.files(_PACKAGE)
    return tuple(
        sorted(p.name[:-5] for p in root.iterdir() if p.name.endswith(".json") and p.is_file())
    )


@functools.cache
def load(name: str) -> Artifact:
    """Return the artifact called ``name`` (e.g. ``"ERC20Template"``); cached.

    >>> load("ERC20Template").bytecode.startswith("0x")
    True

    Raises :class:`KeyError` naming close matches when ``name`` is unknown.
    """
    if name not in names():
        near = difflib.get_close_matches(name, names(), n=5, cutoff=0.5)
        hint = f"; did you mean {', '.join(near)}?" if near else ""
        raise KeyError(f"no Ocean contract artifact named {name!r}{hint}")
    raw = json.loads(importlib.resources.files(_PACKAGE).joinpath(f"{name}.json").read_text())
    bytecode = raw.get("bytecode") or "0x"
    if not bytecode.startswith("0x"):
        bytecode = "0x" + bytecode
    return Artifact(name=name, abi=raw["abi"], bytecode=bytecode)


def contract(w3: Web3, name: str, address: str) -> Contract:
    """A web3 contract for the deployed ``name`` contract at ``address``."""
    return w3.eth.contract(address=Web3.to_checksum_address(address), abi=load(name).abi)
