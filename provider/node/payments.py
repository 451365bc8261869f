"""The bridge from the C2D v2 routes to the escrow (``Escrow`` contract of ocean-contracts).

The chain side (checking funds and authorizations, ``createLock``, claims) is owned by the
escrow module; this module only adapts the routes' calls to it.
"""

from __future__ import annotations

from typing import Any

from provider.errors import ProviderError


def escrow_address(svc: Any) -> str | None:
    """The Escrow contract of this chain, from the address file (None before it is deployed)."""
    address = (svc.addresses or {}).get("Escrow")
    return str(address) if address else None


def lock(
    svc: Any, *, job_id: str, payer: str, payee: str, token: str, amount: int, expiry: int
) -> None:
    """Lock ``amount`` of ``token`` from ``payer``'s escrow funds for ``job_id``; returns once
    the lock is mined. Raises :class:`ProviderError` when the payment cannot be locked."""
    raise ProviderError("Paid compute is not available: escrow payments are not configured", 503)
