"""Ocean V4 DIDs: ``did:op:`` + sha256(checksummed data NFT address + decimal chain id)."""

from __future__ import annotations

import hashlib

from web3 import Web3

DID_PREFIX = "did:op:"


def compute_did(nft_address: str, chain_id: int) -> str:
    """The DID of the asset whose data NFT is ``nft_address`` on chain ``chain_id``.

    The address is checksummed first, so any casing gives the same DID:

    >>> compute_did("0x5fbdb2315678afecb367f032d93f642f64180aa3", 8996)
    'did:op:2d05d9481f04e4ba379d166ef4a8fc66aba6396b21051c3544f34f19c6a59ca2'
    """
    checksummed = Web3.to_checksum_address(nft_address)
    digest = hashlib.sha256(f"{checksummed}{int(chain_id)}".encode()).hexdigest()
    return DID_PREFIX + digest


def is_did(value: object) -> bool:
    """True when ``value`` looks like a V4 DID (``did:op:`` + 64 lowercase hex digits)."""
    if not isinstance(value, str) or not value.startswith(DID_PREFIX):
        return False
    rest = value[len(DID_PREFIX) :]
    return len(rest) == 64 and all(c in "0123456789abcdef" for c in rest)


def did_suffix(did: str) -> str:
    """The DID without its ``did:op:`` prefix (the folder name jobs use)."""
    return did[len(DID_PREFIX) :] if did.startswith(DID_PREFIX) else did
