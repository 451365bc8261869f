"""The boundary between web3's transport and the provider's answers.

A chain whose RPC endpoint does not answer (refused, reset, timed out, an HTTP error from a
proxy in front of it) is not the client's fault: :func:`guard_chain` installs a web3 middleware
that turns every such transport failure into :class:`ChainUnavailable`, a 503 naming the chain
(by id: the RPC URL may carry an API key). Contract reverts and JSON-RPC errors are answers,
not outages, and pass through unchanged: a route that gives them a meaning catches them, and
any other that escapes a request becomes a 503 naming the request's chain in
:func:`provider.errors.register_error_handlers`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from web3.exceptions import ProviderConnectionError
from web3.middleware import Web3Middleware

from provider.errors import ChainUnavailable as ChainUnavailable  # re-exported

log = logging.getLogger(__name__)

#: What a dead or unreachable RPC endpoint raises (requests' errors are OSErrors).
TRANSPORT_ERRORS: tuple[type[BaseException], ...] = (OSError, ProviderConnectionError)
GUARD_NAME = "tidewater_chain_guard"


def chain_guard(chain_id: int) -> type[Web3Middleware]:
    """A web3 middleware class raising :class:`ChainUnavailable` for ``chain_id``'s outages."""

    def guarded(call: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any) -> Any:
            try:
                return call(*args)
            except TRANSPORT_ERRORS as exc:
                log.warning("chain %s RPC failed: %s", chain_id, type(exc).__name__)
                raise ChainUnavailable(chain_id, exc) from exc

        return wrapper

    class ChainGuard(Web3Middleware):
        def wrap_make_request(self, make_request: Any) -> Any:
            return guarded(make_request)

        def wrap_make_batch_request(self, make_batch_request: Any) -> Any:
            return guarded(make_batch_request)

    return ChainGuard


def guard_chain(w3: Any, chain_id: int) -> None:
    """Install (or replace) the outage guard on ``w3``, outermost. Clients without a
    middleware onion (test doubles) are left alone."""
    onion = getattr(w3, "middleware_onion", None)
    if onion is None:
        return
    guard = chain_guard(chain_id)
    if GUARD_NAME in onion:
        onion.replace(GUARD_NAME, guard)
    else:
        onion.inject(guard, name=GUARD_NAME, layer=0)
