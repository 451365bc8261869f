"""``POST /api/services/encrypt?chainId=``: ECIES-encrypt the raw body for the provider's key.

Answers 201 ``text/plain`` ``0x<hex>`` (docs/protocol.md §7). Unsigned, like the reference: only
this provider can decrypt what it returns. The key is the provider key of chain ``chainId``
(required; a chain not served → 400); the chain's node is not asked.
"""

from __future__ import annotations

from flask import Blueprint, Response, request
from flask.typing import ResponseReturnValue

from provider.app import services
from provider.crypto import encrypt_for_key, public_key_hex
from provider.errors import RequestValidationError
from provider.params import require

bp = Blueprint("encrypt", __name__)


@bp.post("/api/services/encrypt")
def encrypt() -> ResponseReturnValue:
    svc = services()
    [chain_id] = require(dict(request.args), "chainId")
    chain = svc.chain(chain_id, live=False)
    body = request.get_data(cache=False)
    if not body:
        raise RequestValidationError({"body": ["The request body must not be empty."]})
    blob = encrypt_for_key(public_key_hex(chain.private_key), body)
    return Response("0x" + blob.hex(), status=201, content_type="text/plain")
