"""Ocean's ``Escrow`` contract (ocean-contracts 3.1.0) from the payee's side, plus the payer's
two calls (for tests, the demo and tools).

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

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import requests
from eth_account.signers.local import LocalAccount
from hexbytes import HexBytes
from web3 import Web3
from web3.contract import Contract
from web3.exceptions import BadFunctionCallOutput, ContractLogicError, Web3RPCError
from web3.logs import DISCARD
from web3.types import TxReceipt

from contracts_abi.artifacts import contract
from contracts_abi.errors import ChainUnavailable, ContractsError, TxFailed
from contracts_abi.tx import send

ZERO_ADDRESS = "0x0000000000000000000000000000000000000000"
#: The address.json key of the Escrow contract (ocean.js 8 reads ``addresses.Escrow``).
ADDRESS_KEY = "Escrow"
#: ``jobType`` sent with claims (no subsidy programme).
JOB_TYPE = 0
#: Gas limits (calls are dry-run first; only the gas used is paid).
LOCK_GAS = 500_000
CLAIM_GAS = 800_000


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


def _translate(exc: ContractsError) -> EscrowError:
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


def _checksum(address: str, what: str) -> str:
    if not isinstance(address, str) or not Web3.is_address(address):
        raise PaymentError("invalid_address", f"{what} {address!r} is not an address")
    return Web3.to_checksum_address(address)


def get_funds(chain: EscrowChain, payer: str, token: str) -> Funds:
    """``getUserFunds(payer, token)``."""
    available, locked = _view(
        chain.contract.functions.getUserFunds(_checksum(payer, "payer"), _checksum(token, "token"))
    )
    return Funds(int(available), int(locked))


def get_authorizations(chain: EscrowChain, payer: str, token: str) -> list[Authorization]:
    """The payer's authorizations of this payee for ``token`` (0 or 1 with Escrow 3.1.0)."""
    rows = _view(
        chain.contract.functions.getAuthorizations(
            _checksum(token, "token"), _checksum(payer, "payer"), chain.payee_address
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
    token_c, payer_c = _checksum(token, "token"), _checksum(payer, "payer")
    for lock in get_locks(chain):
        if lock.job_id == wanted and lock.token == token_c and lock.payer == payer_c:
            return lock
    return None


# -- payee actions -------------------------------------------------------------------------


def check_payment(chain: EscrowChain, payer: str, token: str, amount: int, expiry_s: int) -> None:
    """Check (read-only) that ``createLock`` of ``amount`` for ``expiry_s`` seconds would pass.

    Requires exactly one authorization payer → this payee for ``token``, ``available`` funds
    ≥ ``amount``, ``expiry_s`` ≤ maxLockSeconds, currentLockedAmount + ``amount`` ≤
    maxLockedAmount and currentLocks < maxLockCounts. Raises :class:`PaymentError` (the first
    failed rule, with its ``code``) or :class:`EscrowUnavailable`.
    """
    payer_c = _checksum(payer, "payer")
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
        lock_id_for(job_id), _checksum(token, "token"), _checksum(payer, "payer"), amount, expiry_s
    )
    try:
        receipt = send(chain.w3, chain.payee, fn, gas=LOCK_GAS)
    except ContractsError as exc:
        raise _translate(exc) from exc
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
    token_c, payer_c = _checksum(token, "token"), _checksum(payer, "payer")
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
        error = _translate(exc)
        if isinstance(error, PaymentError) and error.code == "lock_not_found":
            return ClaimResult("absent")  # another worker's claim or a cancel got there first
        raise error from exc
    return outcome_of(chain, receipt, job_id)


def settlement_event(chain: EscrowChain, job_id: str, payer: str, from_block: int) -> ClaimResult:
    """How ``job_id``'s lock ended, from the payee's ``Claimed``/``Canceled`` logs since
    ``from_block`` (outcome ``absent`` when neither is found)."""
    wanted, payer_c = lock_id_for(job_id), _checksum(payer, "payer")
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
            (lock_id_for(j), _checksum(t, "token"), _checksum(p, "payer")) for j, t, p in locks
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
        raise _translate(exc) from exc
    return _tx_hash(receipt)


def _block_time(chain: EscrowChain) -> int:
    try:
        return int(chain.w3.eth.get_block("latest")["timestamp"])
    except (requests.ConnectionError, requests.Timeout) as exc:
        raise EscrowUnavailable("chain_unavailable", f"chain RPC unreachable: {exc}") from exc


# -- payer actions (consumers; used by tests, the demo and tools) --------------------------


def deposit(chain_w3: Web3, escrow: str, payer: LocalAccount, token: str, amount: int) -> None:
    """ERC-20 ``approve(escrow, amount)`` then ``deposit(token, amount)`` from ``payer``."""
    erc20 = contract(chain_w3, "ERC20Template", token)
    try:
        send(chain_w3, payer, erc20.functions.approve(Web3.to_checksum_address(escrow), amount))
        send(
            chain_w3,
            payer,
            contract(chain_w3, "Escrow", escrow).functions.deposit(
                Web3.to_checksum_address(token), amount
            ),
        )
    except ContractsError as exc:
        raise _translate(exc) from exc


def authorize(
    chain_w3: Web3,
    escrow: str,
    payer: LocalAccount,
    token: str,
    payee: str,
    max_locked_amount: int,
    max_lock_seconds: int,
    max_lock_counts: int,
) -> None:
    """``authorize(token, payee, maxLockedAmount, maxLockSeconds, maxLockCounts)`` from
    ``payer`` (replaces an existing authorization of that payee)."""
    fn = contract(chain_w3, "Escrow", escrow).functions.authorize(
        Web3.to_checksum_address(token),
        Web3.to_checksum_address(payee),
        max_locked_amount,
        max_lock_seconds,
        max_lock_counts,
    )
    try:
        send(chain_w3, payer, fn)
    except ContractsError as exc:
        raise _translate(exc) from exc
