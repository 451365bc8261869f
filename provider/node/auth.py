"""Auth tokens of the C2D v2 API (Ocean Node's ``auth/token``): a JWT may replace the signature.

``POST auth/token`` (signed ``address + nonce + "createAuthToken"``) answers ``{"token"}``: an
HS256 JWT with claims ``address``, ``iat``, ``exp`` (``expiryTimestamp`` when given, at most
:data:`MAX_LIFETIME_S` ahead; default :data:`DEFAULT_LIFETIME_S`) and ``jti``. Its key is derived
from the provider key (HMAC-SHA256 over a fixed label), so every process of one provider shares
it and nothing new has to be configured. ``POST auth/token/invalidate`` (signed ``address +
nonce``) revokes a token of that address until it would have expired.

A request carrying ``Authorization: <jwt>`` acts as the token's address: no signature and no
nonce. ocean.js 8 sends it whenever a dApp passes a token instead of a signer (its root-document
request sends the literal ``undefined``, which is ignored).
"""

from __future__ import annotations

import hashlib
import hmac
import time
import uuid
from typing import Any

import jwt
from flask import jsonify, request
from flask.typing import ResponseReturnValue

from datastore.node_records import RevokedTokens
from provider.app import Services, services
from provider.errors import ProviderError, RequestValidationError
from provider.node import bp
from provider.node.discovery import API
from provider.params import address_param, lookup, request_params, text_param
from provider.request_auth import verify_command

DEFAULT_LIFETIME_S = 3600
MAX_LIFETIME_S = 30 * 24 * 3600
_ALGORITHM = "HS256"
_LABEL = b"tidewater C2D v2 auth tokens"


def _key(svc: Services) -> bytes:
    return hmac.new(bytes(svc.provider_account.key), _LABEL, hashlib.sha256).digest()


def issue(svc: Services, address: str, expires_at: int | None = None) -> str:
    """A token for ``address`` valid until ``expires_at`` (unix seconds; default one hour)."""
    now = int(time.time())
    exp = now + DEFAULT_LIFETIME_S if expires_at is None else expires_at
    if exp <= now or exp > now + MAX_LIFETIME_S:
        raise ProviderError(
            f"expiryTimestamp must be in the future and at most {MAX_LIFETIME_S} s ahead", 400
        )
    claims = {"address": address, "iat": now, "exp": exp, "jti": uuid.uuid4().hex}
    return jwt.encode(claims, _key(svc), algorithm=_ALGORITHM)


def claims_of(svc: Services, token: str) -> dict[str, Any]:
    """The claims of a valid, unexpired, unrevoked token; 401 otherwise."""
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            _key(svc),
            algorithms=[_ALGORITHM],
            options={"require": ["exp", "jti", "address"]},
        )
    except jwt.PyJWTError as exc:
        raise ProviderError(f"Invalid auth token: {exc}", 401) from None
    if RevokedTokens(svc.db).is_revoked(str(claims["jti"])):
        raise ProviderError("Invalid auth token: it was invalidated", 401)
    return claims


def bearer() -> str | None:
    """The ``Authorization`` token of the request (``Bearer`` optional), None when absent."""
    value = (request.headers.get("Authorization") or "").strip()
    if value.lower().startswith("bearer "):
        value = value[7:].strip()
    return None if value in ("", "undefined", "null") else value


def authenticate(svc: Services, params: dict[str, Any], command: str) -> str:
    """The address a signed C2D v2 request acts for: the token's (``Authorization``; a
    ``consumerAddress`` sent with it must match), or ``consumerAddress`` after its v2 signature
    and nonce (``command``) are checked and the nonce consumed."""
    token = bearer()
    if token is not None:
        address = str(claims_of(svc, token)["address"])
        sent = address_param(params, "consumerAddress", required=False)
        if sent is not None and sent.lower() != address.lower():
            raise ProviderError("The auth token is not consumerAddress's", 401)
        return sent or address
    consumer = address_param(params, "consumerAddress")
    assert consumer is not None
    verify_command(
        consumer, lookup(params, "signature"), lookup(params, "nonce"), command, store=svc.nonces
    )
    return consumer


@bp.post(f"{API}/auth/token")
def create_token() -> ResponseReturnValue:
    params = request_params()
    address = address_param(params, "address")
    assert address is not None
    svc = services()
    verify_command(
        address,
        lookup(params, "signature"),
        lookup(params, "nonce"),
        "createAuthToken",
        store=svc.nonces,
    )
    expiry = text_param(params, "expiryTimestamp")
    if expiry is not None and not expiry.isdigit():
        raise RequestValidationError({"expiryTimestamp": ["Must be unix seconds."]})
    return jsonify({"token": issue(svc, address, int(expiry) if expiry else None)})


@bp.post(f"{API}/auth/token/invalidate")
def invalidate_token() -> ResponseReturnValue:
    params = request_params()
    address = address_param(params, "address")
    token = text_param(params, "token")
    assert address is not None
    if token is None:
        raise RequestValidationError({"token": ["The token field is required."]})
    svc = services()
    verify_command(
        address, lookup(params, "signature"), lookup(params, "nonce"), "", store=svc.nonces
    )
    claims = claims_of(svc, token)
    if str(claims["address"]).lower() != address.lower():
        raise ProviderError("The auth token is not this address's", 401)
    RevokedTokens(svc.db).revoke(str(claims["jti"]), int(claims["exp"]))
    return jsonify({"success": True})
