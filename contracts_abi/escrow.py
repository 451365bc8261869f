"""Ocean's ``Escrow`` contract (ocean-contracts 3.1.0) from the payee's side. Its values and
errors are in :mod:`contracts_abi.escrow_state`, the payer's two calls (for tests, the demo and
tools) in :mod:`contracts_abi.escrow_payer`; every name stays importable from here.

This is the chain half of C2D v2 payments (``docs/escrow.md``). A consumer deposits tokens in
the Escrow and authorizes this provider (the *payee*: the environment's ``consumerAddress``,
whose key signs here) with limits. For each paid job the provider:

1. checks the payment can be locked: :func:`check_payment` (read-only, raises
   :class:`PaymentError` with a stable ``code``);
2. locks the job's maximum cost: :func:`create_lock` (``createLock(lock_id_for(job_id), token,
   payer, amount, expiry_s)``; returns once the transaction is mined with status 1 — start the
   job only after it returns);
3. after the job, claims the actual cost: :func:`claim` (the 7-argument
   ``claimLockAndWithdraw(jobId, token, payer, amount, proof, jobType=0, subsidyProviders=[])``);
   the rest of the lock returns to the payer's available funds;
4. releases locks whose expiry passed: :func:`cancel_expired_locks`.

Every function takes an :class:`EscrowChain` (web3 client, Escrow address, payee account) and
raises only :class:`EscrowError` subclasses, each carrying ``code`` and ``http_status``:

- :class:`PaymentError` (400): the payer's escrow state does not allow this payment;
- :class:`EscrowUnavailable` (503): the chain does not answer, or no Escrow is deployed;
- :class:`EscrowTxError` (502): a payee transaction failed for another reason.

Amounts are integers in the token's base units (wei-like); ``expiry_s`` is relative seconds,
as the contract takes it. Job ids are Ocean Node's: ``uint256(sha256(job_id))``.

Contract facts relied on (Escrow.sol 3.1.0): one authorization per (payer, token, payee) —
``authorize`` updates it in place; ``createLock`` requires payer ≠ payee, funds ≥ amount,
expiry ≤ maxLockSeconds, currentLockedAmount + amount ≤ maxLockedAmount, currentLocks <
maxLockCounts and a (payer, jobId) not already locked by this payee; a claim of ``amount`` ≤ the
lock moves ``amount`` out of the payer's funds (the payee receives it less the OPC fee of
``FactoryRouter.getOPCFee(token)``) and returns the rest of the lock to the payer's available
funds; a claim after the lock's expiry cancels the lock instead (no revert); a claimed or
cancelled lock is deleted, so a second claim reverts with ``Lock not found``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import requests
from hexbytes import HexBytes
from web3.logs import DISCARD
from web3.types import TxReceipt

from contracts_abi.errors import ContractsError
from contracts_abi.escrow_payer import authorize, deposit
from contracts_abi.escrow_state import (
    ADDRESS_KEY,
    Authorization,
    ClaimResult,
    EscrowChain,
    EscrowError,
    EscrowTxError,
    EscrowUnavailable,
    Funds,
    Lock,
    PaymentError,
    checksum_address,
    find_lock,
    get_authorizations,
    get_funds,
    get_locks,
    lock_id_for,
    translate_error,
)
from contracts_abi.tx import send

__all__ = [
    "ADDRESS_KEY",
    "Authorization",
    "ClaimResult",
    "EscrowChain",
    "EscrowError",
    "EscrowTxError",
    "EscrowUnavailable",
    "Funds",
    "Lock",
    "PaymentError",
    "authorize",
    "cancel_expired_locks",
    "check_payment",
    "claim",
    "create_lock",
    "deposit",
    "find_lock",
    "get_authorizations",
    "get_funds",
    "get_locks",
    "lock_id_for",
    "outcome_of",
    "receipt_of",
    "settlement_event",
]

#: ``jobType`` sent with claims (no subsidy programme).
JOB_TYPE = 0
#: Gas limits (calls are dry-run first; only the gas used is paid).
LOCK_GAS = 500_000
CLAIM_GAS = 800_000


# -- payee actions -------------------------------------------------------------------------


def check_payment(chain: EscrowChain, payer: str, token: str, amount: int, expiry_s: int) -> None:
    """Check (read-only) that ``createLock`` of ``amount`` for ``expiry_s`` seconds would pass.

    Requires exactly one authorization payer → this payee for ``token``, ``available`` funds
    ≥ ``amount``, ``expiry_s`` ≤ maxLockSeconds, currentLockedAmount + ``amount`` ≤
    maxLockedAmount and currentLocks < maxLockCounts. Raises :class:`PaymentError` (the first
    failed rule, with its ``code``) or :class:`EscrowUnavailable`.
    """
    payer_c = checksum_address(payer, "payer")
    if not isinstance(amount, int) or amount <= 0:
        raise PaymentError("invalid_amount", f"the amount to lock must be positive, not {amount}")
    if not isinstance(expiry_s, int) or expiry_s <= 0:
        raise PaymentError("invalid_expiry", f"the lock expiry must be positive, not {expiry_s}")
    if payer_c == chain.payee_address:
        raise PaymentError("payer_is_payee", "the payer cannot be this provider's payee")
    auths = get_authorizations(chain, payer_c, token)
    if not auths:
        raise PaymentError(
            "no_authorization",
            f"{payer_c} has not authorized {chain.payee_address} in the Escrow for {token}",
        )
    if len(auths) > 1:
        raise PaymentError(
            "multiple_authorizations",
            f"{payer_c} has {len(auths)} authorizations of {chain.payee_address}: expected one",
        )
    auth = auths[0]
    funds = get_funds(chain, payer_c, token)
    if funds.available < amount:
        raise PaymentError(
            "insufficient_funds",
            f"escrow funds available {funds.available} < {amount} needed (deposit more)",
        )
    if expiry_s > auth.max_lock_seconds:
        raise PaymentError(
            "expiry_too_long",
            f"the lock needs {expiry_s} s but the authorization allows {auth.max_lock_seconds} s",
        )
    if auth.current_locked_amount + amount > auth.max_locked_amount:
        raise PaymentError(
            "over_max_locked_amount",
            f"locked {auth.current_locked_amount} + {amount} exceeds the authorized "
            f"maximum {auth.max_locked_amount}",
        )
    if auth.current_locks >= auth.max_lock_counts:
        raise PaymentError(
            "over_max_lock_count",
            f"{auth.current_locks} locks held of the {auth.max_lock_counts} authorized",
        )


def _tx_hash(receipt: TxReceipt) -> str:
    return HexBytes(receipt["transactionHash"]).to_0x_hex()


def create_lock(
    chain: EscrowChain, job_id: str, token: str, payer: str, amount: int, expiry_s: int
) -> str:
    """Lock ``amount`` of the payer's funds for ``job_id`` for ``expiry_s`` seconds; return the
    transaction hash once mined with status 1 (then, and only then, start the job).

    Runs :func:`check_payment` first; a revert maps to :class:`PaymentError` (``lock_exists``
    when this job is already locked), a chain outage to :class:`EscrowUnavailable`.
    """
    check_payment(chain, payer, token, amount, expiry_s)
    fn = chain.contract.functions.createLock(
        lock_id_for(job_id),
        checksum_address(token, "token"),
        checksum_address(payer, "payer"),
        amount,
        expiry_s,
    )
    try:
        receipt = send(chain.w3, chain.payee, fn, gas=LOCK_GAS)
    except ContractsError as exc:
        raise translate_error(exc) from exc
    return _tx_hash(receipt)


def _events(chain: EscrowChain, receipt: TxReceipt, name: str) -> list[Any]:
    event = getattr(chain.contract.events, name)()
    return [
        e for e in event.process_receipt(receipt, errors=DISCARD) if e["address"] == chain.address
    ]


def outcome_of(chain: EscrowChain, receipt: TxReceipt, job_id: str) -> ClaimResult:
    """What a mined claim transaction did to ``job_id``'s lock (from its events)."""
    wanted = lock_id_for(job_id)
    tx_hash = _tx_hash(receipt)
    for event in _events(chain, receipt, "Claimed"):
        if int(event["args"]["jobId"]) == wanted:
            return ClaimResult("claimed", int(event["args"]["amount"]), tx_hash)
    for event in _events(chain, receipt, "Canceled"):
        if int(event["args"]["jobId"]) == wanted:
            return ClaimResult("cancelled", 0, tx_hash)
    return ClaimResult("absent", 0, tx_hash)


def claim(
    chain: EscrowChain,
    job_id: str,
    token: str,
    payer: str,
    amount: int,
    proof: bytes,
    *,
    on_signed: Any = None,
) -> ClaimResult:
    """Claim ``amount`` (≤ the lock) of ``job_id``'s lock and withdraw it to the payee.

    Sends the 7-argument ``claimLockAndWithdraw(jobId, token, payer, amount, proof, 0, [])``
    only if the lock is still on chain (else returns outcome ``absent`` and sends nothing), so
    repeating a claim never claims twice (the contract deletes a claimed lock too). ``proof``
    is the public job JSON as bytes. ``on_signed(tx_hash)`` runs before the transaction is
    broadcast, to record its hash durably. A lock past its expiry is cancelled by the contract
    instead (outcome ``cancelled``).
    """
    if not isinstance(amount, int) or amount < 0:
        raise PaymentError("invalid_amount", f"a claim must be a non-negative integer: {amount}")
    token_c, payer_c = checksum_address(token, "token"), checksum_address(payer, "payer")
    lock = find_lock(chain, job_id, token_c, payer_c)
    if lock is None:
        return ClaimResult("absent")
    if amount > lock.amount:
        raise PaymentError(
            "amount_too_high", f"claim {amount} exceeds the lock of {lock.amount} for {job_id}"
        )
    fn = chain.contract.functions.claimLockAndWithdraw(
        lock_id_for(job_id), token_c, payer_c, amount, bytes(proof), JOB_TYPE, []
    )
    try:
        receipt = send(chain.w3, chain.payee, fn, gas=CLAIM_GAS, on_signed=on_signed)
    except ContractsError as exc:
        error = translate_error(exc)
        if isinstance(error, PaymentError) and error.code == "lock_not_found":
            return ClaimResult("absent")  # another worker's claim or a cancel got there first
        raise error from exc
    return outcome_of(chain, receipt, job_id)


def settlement_event(chain: EscrowChain, job_id: str, payer: str, from_block: int) -> ClaimResult:
    """How ``job_id``'s lock ended, from the payee's ``Claimed``/``Canceled`` logs since
    ``from_block`` (outcome ``absent`` when neither is found)."""
    wanted, payer_c = lock_id_for(job_id), checksum_address(payer, "payer")
    filters = {"payee": chain.payee_address, "payer": payer_c}
    try:
        for name, outcome in (("Claimed", "claimed"), ("Canceled", "cancelled")):
            event = getattr(chain.contract.events, name)
            for log in event().get_logs(argument_filters=filters, from_block=from_block):
                if int(log["args"]["jobId"]) == wanted:
                    amount = int(log["args"]["amount"]) if outcome == "claimed" else 0
                    return ClaimResult(
                        outcome,  # type: ignore[arg-type]
                        amount,
                        HexBytes(log["transactionHash"]).to_0x_hex(),
                    )
    except (requests.ConnectionError, requests.Timeout) as exc:
        raise EscrowUnavailable("chain_unavailable", f"chain RPC unreachable: {exc}") from exc
    return ClaimResult("absent")


def receipt_of(chain: EscrowChain, tx_hash: str) -> TxReceipt | None:
    """The receipt of ``tx_hash`` (None: unknown to the node or not mined yet)."""
    try:
        return chain.w3.eth.get_transaction_receipt(HexBytes(tx_hash))
    except (requests.ConnectionError, requests.Timeout) as exc:
        raise EscrowUnavailable("chain_unavailable", f"chain RPC unreachable: {exc}") from exc
    except Exception as exc:  # web3's TransactionNotFound and node-specific variants
        if "not found" in str(exc).lower() or type(exc).__name__ == "TransactionNotFound":
            return None
        raise EscrowTxError("tx_failed", f"cannot read receipt {tx_hash}: {exc}") from exc


def cancel_expired_locks(
    chain: EscrowChain, locks: Iterable[tuple[str, str, str]] | None = None
) -> str | None:
    """Release expired locks of this payee back to their payers; return the tx hash, or None
    when nothing had expired (nothing is sent then).

    ``locks``: ``(job_id, token, payer)`` triples to cancel; None = every expired lock of
    this payee. Locks not yet expired are left alone (as the contract does).
    """
    now = _block_time(chain)
    live = [lock for lock in get_locks(chain) if lock.expiry < now]
    if locks is not None:
        wanted = {
            (lock_id_for(j), checksum_address(t, "token"), checksum_address(p, "payer"))
            for j, t, p in locks
        }
        live = [lock for lock in live if (lock.job_id, lock.token, lock.payer) in wanted]
    if not live:
        return None
    payee = chain.payee_address
    fn = chain.contract.functions.cancelExpiredLocks(
        [lock.job_id for lock in live],
        [lock.token for lock in live],
        [lock.payer for lock in live],
        [payee] * len(live),
    )
    try:
        receipt = send(chain.w3, chain.payee, fn, gas=CLAIM_GAS + 150_000 * len(live))
    except ContractsError as exc:
        raise translate_error(exc) from exc
    return _tx_hash(receipt)


def _block_time(chain: EscrowChain) -> int:
    try:
        return int(chain.w3.eth.get_block("latest")["timestamp"])
    except (requests.ConnectionError, requests.Timeout) as exc:
        raise EscrowUnavailable("chain_unavailable", f"chain RPC unreachable: {exc}") from exc
