"""The bridge from the C2D v2 routes to escrow payments.

The chain side (checking funds and authorizations, ``createLock``, claims, the ledger) is
:mod:`operator_engine.settlement` over :mod:`contracts_abi.escrow`; this module only finds the
:class:`~operator_engine.settlement.Settlement` to use and turns its errors into HTTP answers.
The payee (who sends ``createLock`` and the claims) is the provider's own wallet, so a paid
environment's ``consumerAddress`` must be the provider's address.
"""

from __future__ import annotations

from collections.abc import Callable
from fractions import Fraction
from typing import TYPE_CHECKING, TypeVar

from flask import current_app

from contracts_abi.escrow import EscrowChain, EscrowError
from operator_engine.settlement import Settlement
from provider.errors import ProviderError

if TYPE_CHECKING:
    from provider.app import Services

T = TypeVar("T")


def escrow_address(svc: Services) -> str | None:
    """The Escrow contract of this chain, from the address file (None before it is deployed)."""
    address = (svc.addresses or {}).get("Escrow")
    return str(address) if address else None


def settlement(svc: Services) -> Settlement:
    """The engine's Settlement when it has one, else this app's (built once)."""
    found = getattr(svc.engine, "settlement", None)
    if isinstance(found, Settlement):
        return found
    mine = current_app.extensions.get("tidewater_settlement")
    if mine is None:
        mine = Settlement(
            svc.db,
            lambda: EscrowChain.from_addresses(svc.web3, svc.addresses, svc.provider_account),
        )
        current_app.extensions["tidewater_settlement"] = mine
    return mine  # type: ignore[no-any-return]


def guarded(action: Callable[[], T]) -> T:
    """Run an escrow action; an :class:`EscrowError` becomes its HTTP answer."""
    try:
        return action()
    except EscrowError as exc:
        raise ProviderError(
            f"Escrow payment refused ({exc.code}): {exc.message}", exc.http_status
        ) from None


def lock(
    svc: Services,
    *,
    job_id: str,
    payer: str,
    token: str,
    amount: int,
    expiry: int,
    rate: Fraction,
    min_duration: int,
    max_duration: int,
) -> str:
    """Lock ``amount`` of ``token`` from ``payer``'s escrow funds for ``job_id``; returns the
    mined ``createLock`` transaction. Raises :class:`ProviderError` when it cannot be locked."""
    found = settlement(svc)
    return guarded(
        lambda: found.lock(
            job_id,
            token=token,
            payer=payer,
            amount=amount,
            expiry_s=expiry,
            rate_per_minute=rate,
            min_duration_s=min_duration,
            max_duration_s=max_duration,
        )
    )


def release(svc: Services, job_id: str, reason: str) -> None:
    """Give a lock back in full (its job could not be queued)."""
    found = settlement(svc)
    guarded(lambda: found.release(job_id, reason))
