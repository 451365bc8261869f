"""Escrow errors reach clients as JSON with their own status: one row per error class."""

from __future__ import annotations

import pytest
from flask import Flask

from contracts_abi.escrow import EscrowError, EscrowTxError, EscrowUnavailable, PaymentError
from provider.errors import register_error_handlers


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (PaymentError("insufficient_funds", "escrow funds available 1 < 2 needed"), 400),
        (PaymentError("no_authorization", "0xabc has not authorized 0xdef"), 400),
        (EscrowUnavailable("chain_unavailable", "chain RPC unreachable"), 503),
        (EscrowUnavailable("escrow_not_deployed", "no Escrow contract"), 503),
        (EscrowTxError("tx_failed", "transaction reverted: status 0"), 502),
    ],
)
def test_escrow_errors_become_json(error: EscrowError, status: int) -> None:
    app = Flask(__name__)
    register_error_handlers(app)

    @app.post("/pay")
    def pay() -> str:
        raise error

    reply = app.test_client().post("/pay")
    assert reply.status_code == status
    assert reply.json == {"error": error.message, "code": error.code}
