"""What Ocean's ``Escrow`` contract holds, read through one chain handle: a payer's funds, its
authorizations and the payee's locks; and the escrow errors every call raises (payee actions:
:mod:`contracts_abi.escrow`, payer calls: :mod:`contracts_abi.escrow_payer`)."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import requests
from eth_account.signers.local import LocalAccount
from web3 import Web3
from web3.contract import Contract
from web3.exceptions import BadFunctionCallOutput, ContractLogicError, Web3RPCError

from contracts_abi.artifacts import contract
from contracts_abi.errors import ChainUnavailable, ContractsError, TxFailed

ZERO_ADDRESS = "0x0000000000000000000000000000000000000000"
#: The address.json key of the Escrow contract (ocean.js 8 reads ``addresses.Escrow``).
ADDRESS_KEY = "Escrow"

# -- errors --------------------------------------------------------------------------------


class EscrowError(ContractsError):
    """Base of the escrow errors: ``code`` (stable, snake_case), ``message``, ``http_status``."""

    http_status = 502

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class PaymentError(EscrowError):
    """The payer's escrow state refuses this payment (the client's to fix): HTTP 400.

    Codes: ``invalid_amount``, ``invalid_expiry``, ``payer_is_payee``, ``no_authorization``,
    ``multiple_authorizations``, ``insufficient_funds``, ``expiry_too_long``,
    ``over_max_locked_amount``, ``over_max_lock_count``, ``lock_exists``, ``lock_not_found``,
    ``amount_too_high``, ``invalid_address``.
    """

    http_status = 400


class EscrowUnavailable(EscrowError):
    """The chain does not answer or no Escrow contract is known: HTTP 503 (retry later).

    Codes: ``chain_unavailable``, ``escrow_not_deployed``, ``escrow_not_configured`` (no payee
    key).
    """

    http_status = 503


class EscrowTxError(EscrowError):
    """A payee transaction failed for a reason that is not the payer's: HTTP 502.

    Codes: ``tx_failed`` (reverted after its dry run, no receipt in time, or another node error).
    """

    http_status = 502


#: Revert reasons of Escrow.sol mapped to PaymentError codes.
_REVERTS: dict[str, str] = {
    "Payer does not have enough funds": "insufficient_funds",
    "No auth found": "no_authorization",
    "Expiry too high": "expiry_too_long",
    "Exceeds maxLockedAmount": "over_max_locked_amount",
    "Exceeds maxLockCounts": "over_max_lock_count",
    "JobId already exists": "lock_exists",
    "Payer cannot be payee": "payer_is_payee",
    "Invalid amount": "invalid_amount",
    "Lock not found": "lock_not_found",
    "Amount too high": "amount_too_high",
}


def translate_error(exc: ContractsError) -> EscrowError:
    """A ``contracts_abi`` error as an escrow error: the contract's known refusals are the
    payer's (:class:`PaymentError`), anything else the chain's (503) or the payee's (502)."""
    if isinstance(exc, EscrowError):
        return exc
    if isinstance(exc, ChainUnavailable):
        return EscrowUnavailable("chain_unavailable", str(exc))
    if isinstance(exc, TxFailed):
        code = _REVERTS.get(exc.reason.strip())
        if code is not None:
            return PaymentError(code, f"escrow refused: {exc.reason}")
    return EscrowTxError("tx_failed", str(exc))


# -- values read from the contract ---------------------------------------------------------


@dataclass(frozen=True)
class Funds:
    """A payer's balance of one token in the Escrow (base units)."""

    available: int
    locked: int


@dataclass(frozen=True)
class Authorization:
    """A payer's authorization of one payee for one token (``getAuthorizations`` entry)."""

    payee: str
    max_locked_amount: int
    current_locked_amount: int
    max_lock_seconds: int
    max_lock_counts: int
    current_locks: int


@dataclass(frozen=True)
class Lock:
    """A live lock held by the payee (``getLocks`` entry; ``expiry`` and ``start_time`` are
    unix seconds)."""

    job_id: int
    payer: str
    amount: int
    expiry: int
    token: str
    start_time: int


@dataclass(frozen=True)
class ClaimResult:
    """What a claim did. ``outcome``: ``claimed`` (``amount`` left the payer's funds),
    ``cancelled`` (the lock had expired: the contract returned it all to the payer, amount 0),
    ``absent`` (no such lock: claimed or cancelled earlier — nothing sent)."""

    outcome: Literal["claimed", "cancelled", "absent"]
    amount: int = 0
    tx_hash: str | None = None


def lock_id_for(job_id: str) -> int:
    """The Escrow ``jobId`` of a job: ``uint256(sha256(utf8(job_id)))``, as Ocean Node does.

    >>> lock_id_for("abc") == int(hashlib.sha256(b"abc").hexdigest(), 16)
    True
    >>> 0 < lock_id_for("") < 2**256
    True
    """
    return int.from_bytes(hashlib.sha256(job_id.encode()).digest(), "big")


# -- the chain handle ----------------------------------------------------------------------


@dataclass(frozen=True)
class EscrowChain:
    """What every call needs: a web3 client, the Escrow address and the payee's account.

    The payee is the provider wallet that sends ``createLock`` and the claims (the
    environments' ``consumerAddress``); it needs gas and must differ from every payer.
    """

    w3: Web3
    address: str
    payee: LocalAccount

    @classmethod
    def from_addresses(
        cls, w3: Web3, addresses: Mapping[str, Any], payee: LocalAccount
    ) -> EscrowChain:
        """The chain handle for an address.json network entry; raises
        :class:`EscrowUnavailable` (``escrow_not_deployed``) when it has no ``Escrow``."""
        address = addresses.get(ADDRESS_KEY)
        if not isinstance(address, str) or not Web3.is_address(address):
            raise EscrowUnavailable(
                "escrow_not_deployed",
                "no Escrow contract in the address file: redeploy with `tidewater chain`",
            )
        return cls(w3=w3, address=Web3.to_checksum_address(address), payee=payee)

    @property
    def contract(self) -> Contract:
        return contract(self.w3, "Escrow", self.address)

    @property
    def payee_address(self) -> str:
        return str(self.payee.address)


def _view(fn: Any) -> Any:
    try:
        return fn.call()
    except (requests.ConnectionError, requests.Timeout) as exc:
        raise EscrowUnavailable("chain_unavailable", f"chain RPC unreachable: {exc}") from exc
    except BadFunctionCallOutput as exc:  # no contract at the address on this chain
        raise EscrowUnavailable(
            "escrow_not_deployed", "no Escrow contract answers at the configured address"
        ) from exc
    except (ContractLogicError, Web3RPCError) as exc:
        raise EscrowTxError("tx_failed", f"Escrow call failed: {exc}") from exc


def checksum_address(address: str, what: str) -> str:
    """``address`` checksummed, or :class:`PaymentError` ``invalid_address`` naming ``what``."""
    if not isinstance(address, str) or not Web3.is_address(address):
        raise PaymentError("invalid_address", f"{what} {address!r} is not an address")
    return Web3.to_checksum_address(address)


def get_funds(chain: EscrowChain, payer: str, token: str) -> Funds:
    """``getUserFunds(payer, token)``."""
    available, locked = _view(
        chain.contract.functions.getUserFunds(
            checksum_address(payer, "payer"), checksum_address(token, "token")
        )
    )
    return Funds(int(available), int(locked))


def get_authorizations(chain: EscrowChain, payer: str, token: str) -> list[Authorization]:
    """The payer's authorizations of this payee for ``token`` (0 or 1 with Escrow 3.1.0)."""
    rows = _view(
        chain.contract.functions.getAuthorizations(
            checksum_address(token, "token"), checksum_address(payer, "payer"), chain.payee_address
        )
    )
    return [
        Authorization(str(r[0]), int(r[1]), int(r[2]), int(r[3]), int(r[4]), int(r[5]))
        for r in rows
    ]


def get_locks(chain: EscrowChain) -> list[Lock]:
    """Every live lock this payee holds (filter locally: the contract's filter ORs its
    arguments)."""
    rows = _view(chain.contract.functions.getLocks(ZERO_ADDRESS, ZERO_ADDRESS, chain.payee_address))
    return [Lock(int(r[0]), str(r[1]), int(r[2]), int(r[3]), str(r[4]), int(r[5])) for r in rows]


def find_lock(chain: EscrowChain, job_id: str, token: str, payer: str) -> Lock | None:
    """The payee's live lock of ``job_id`` (None: never created, claimed or cancelled)."""
    wanted = lock_id_for(job_id)
    token_c, payer_c = checksum_address(token, "token"), checksum_address(payer, "payer")
    for lock in get_locks(chain):
        if lock.job_id == wanted and lock.token == token_c and lock.payer == payer_c:
            return lock
    return None
