"""``GET /api/services/nonce?userAddress=``: the stored nonce as a JSON string
(docs/protocol.md §3)."""

from __future__ import annotations

from flask import Blueprint, jsonify
from flask.typing import ResponseReturnValue

from provider.app import services
from provider.params import address_param, request_params

bp = Blueprint("nonce", __name__)


@bp.get("/api/services/nonce")
def nonce() -> ResponseReturnValue:
    address = address_param(request_params(), "userAddress")
    assert address is not None
    return jsonify({"nonce": services().nonces.get(address)})
