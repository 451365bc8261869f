"""The provider's one exception tree (docs/protocol.md §1 error bodies), the admin API's included.

Routes raise these; the single handler registered by :func:`register_error_handlers` turns them
into JSON: ``{"error": ...}`` with the error's status, except the shapes clients pin (Ocean's
validation body, the admin API's documented ``{"message": ...}``). Third-party errors are
translated here, at one boundary: an escrow payment error
(:class:`contracts_abi.escrow.EscrowError`) becomes ``{"error", "code"}`` with its own
``http_status`` (400, 502 or 503); a fee-token check the chain did not answer a 503; any other
web3 error a 503 naming the request's chain (:class:`ChainUnavailable`; transport failures
become one in :mod:`provider.chain`); a stored-credentials error an admin answer.
``HTTPException`` (404, 405, 413, …) keeps its own code; anything else becomes a 500
``{"error": "internal error"}``, logged with the request id (never the request's values).
"""

from __future__ import annotations

import logging
import traceback
from typing import Any

from flask import Flask, Response, g, jsonify, request
from web3.exceptions import Web3Exception
from werkzeug.exceptions import HTTPException

from contracts_abi.escrow import EscrowError
from operator_engine.credentials import CredentialsError
from operator_engine.environments import FeeTokenUnchecked
from provider.request_accounting import ERROR_KEY, REQUEST_ID_KEY

log = logging.getLogger("tidewater.provider")


class ProviderError(Exception):
    """A business-rule failure: ``{"error": message}`` with ``status_code`` (default 400)."""

    status_code: int = 400

    def __init__(self, message: str = "", status_code: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        if status_code is not None:
            self.status_code = status_code

    def payload(self) -> dict[str, Any]:
        return {"error": self.message}


class RequestValidationError(ProviderError):
    """Request validation failed: 400 ``{"message": "Validation error", "errors": ..}``."""

    def __init__(self, errors: dict[str, list[str]]) -> None:
        super().__init__("Validation error", 400)
        self.errors = errors

    def payload(self) -> dict[str, Any]:
        return {"message": "Validation error", "errors": self.errors, "success": False}


class SignatureError(RequestValidationError):
    """A signature is missing, malformed, by the wrong key, or its nonce is replayed."""

    def __init__(self, message: str) -> None:
        super().__init__({"signature": [message]})
        self.message = message
        self.args = (message,)


class ResourceError(ProviderError):
    """A compute validation code (docs/protocol.md §6): ``{"error": {resource: code}}``."""

    def __init__(
        self, resource: str, code: str, status_code: int = 400, *, detail: str | None = None
    ) -> None:
        super().__init__(f"{resource}: {code}", status_code)
        self.resource = resource
        self.code = code
        self.detail = detail

    def payload(self) -> dict[str, Any]:
        """``{"error": {resource: code}}``, plus ``"message": detail`` when there is one."""
        body: dict[str, Any] = {"error": {self.resource: self.code}}
        if self.detail:
            body["message"] = self.detail
        return body


class AdminError(ProviderError):
    """An admin API request that cannot be served: ``{"message": ...}`` (the Seqera/Tower
    documents' shape, pinned by ``provider/openapi/admin.yaml``) with ``status_code``."""

    def payload(self) -> dict[str, Any]:
        return {"message": self.message}


class ChainUnavailable(ProviderError):
    """503 ``{"error": "chain <id> is unavailable: ..."}``: the RPC endpoint did not answer."""

    status_code = 503

    def __init__(self, chain_id: int, cause: BaseException | str) -> None:
        reason = (
            cause
            if isinstance(cause, str)
            else f"its RPC endpoint did not answer ({type(cause).__name__})"
        )
        super().__init__(f"chain {chain_id} is unavailable: {reason}; try again later")
        self.chain_id = chain_id


def _json(body: dict[str, Any], status: int) -> Response:
    response = jsonify(body)
    response.status_code = status
    return response


def register_error_handlers(app: Flask) -> None:
    """Install the one handler that turns exceptions into Ocean-style JSON bodies."""

    @app.errorhandler(ProviderError)
    def _provider_error(exc: ProviderError) -> Response:
        request.environ[ERROR_KEY] = exc  # counted by provider.metrics
        return _json(exc.payload(), exc.status_code)

    @app.errorhandler(FeeTokenUnchecked)
    def _fee_token_unchecked(exc: FeeTokenUnchecked) -> Response:
        # the chain did not answer an environment's fee-token check: an outage, not our bug
        return _json({"error": str(exc)}, 503)

    @app.errorhandler(Web3Exception)
    def _chain_error(exc: Web3Exception) -> Response:
        # a chain's error that no route gave a meaning: the request's chain failed to answer
        chain = g.get("tidewater_chain")
        if chain is None:
            return _unexpected(exc)
        chain.mark_down()  # ask its node again on the next request
        log.warning("chain %s answered %s", chain.chain_id, type(exc).__name__)
        return _provider_error(ChainUnavailable(chain.chain_id, exc))

    @app.errorhandler(CredentialsError)
    def _credentials_error(exc: CredentialsError) -> Response:
        # only the admin API manages stored credentials
        return _provider_error(AdminError(exc.message, exc.status_code))

    @app.errorhandler(EscrowError)
    def _escrow_error(exc: EscrowError) -> Response:
        # 400 the payer's escrow refuses, 503 chain down / no Escrow, 502 a payee tx failed
        return _json({"error": exc.message, "code": exc.code}, exc.http_status)

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> Response:
        response = _json({"error": exc.description or exc.name}, exc.code or 500)
        for name, value in exc.get_headers():
            if name.lower() != "content-type":  # e.g. 416's Content-Range: bytes */<length>
                response.headers[name] = value
        if exc.code == 405 and exc.response is None:
            allowed = getattr(exc, "valid_methods", None)
            if allowed:
                response.headers["Allow"] = ", ".join(allowed)
        return response

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Response:
        # Frames only: an exception's message may quote request values (URLs, signatures).
        frames = "".join(traceback.format_tb(exc.__traceback__))
        log.error(
            "unhandled %s (request %s)\n%s",
            type(exc).__name__,
            request.environ.get(REQUEST_ID_KEY, "-"),
            frames,
        )
        return _json({"error": "internal error"}, 500)
