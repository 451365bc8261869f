"""``POST /api/services/encrypt?chainId=``: ECIES-encrypt the raw body for the provider's key.

Answers 201 ``text/plain`` ``0x<hex>`` (PROTOCOL.md §7). Unsigned, like the reference: only
this provider can decrypt what it returns.
"""

from __future__ import annotations

from flask import Blueprint, Response, request
from flask.typing import ResponseReturnValue

from provider.app import services
from provider.crypto import encrypt_for_key, public_key_hex
from provider.errors import RequestValidationError
from provider.params import require_chain_id

bp = Blueprint("encrypt", __name__)


@bp.post("/api/services/encrypt")
def encrypt() -> ResponseReturnValue:
    svc = services()
    require_chain_id(request.args.get("chainId"), svc.chain_id)
    body = request.get_data(cache=False)
    if not body:
        raise RequestValidationError({"body": ["The request body must not be empty."]})
    blob = encrypt_for_key(public_key_hex(svc.settings.require_private_key()), body)
    return Response("0x" + blob.hex(), status=201, content_type="text/plain")
