"""The provider's application factory.

:func:`create_app` builds everything the routes use (job engine, nonce store, provider key,
chain client, asset resolver) and hangs it on ``app.extensions["tidewater"]`` as
:class:`Services`; nothing is built at import time. Routes reach it with :func:`services`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from inspect import iscoroutinefunction
from typing import Any

from eth_account.signers.local import LocalAccount
from flask import Flask, current_app, g, has_request_context
from flask.globals import request_ctx
from sqlalchemy import Engine as SqlEngine
from web3 import Web3

from operator_engine.models import Job
from provider.assets import AssetResolver, build_resolver
from provider.chain import ChainUnavailable
from provider.chains import (
    Chain,
    UnknownChain,
    build_chains,
    install_fee_token_rules,
    parse_chain_id,
)
from provider.chains import ChainUnavailableError as ChainUnavailableError  # re-exported
from provider.engine_port import EnginePort
from provider.errors import ProviderError, register_error_handlers
from provider.indexer import indexed_chain
from provider.json_limits import install_json_limits
from provider.metrics import install_metrics
from provider.nonces import NonceStore
from provider.request_accounting import ROUTE_KEY, RequestAccounting
from tidewater import __version__
from tidewater.settings import Settings

SOFTWARE = "tidewater"
VERSION = __version__

RPC_TIMEOUT_S = 10.0
log = logging.getLogger(__name__)


class ProviderFlask(Flask):
    """Flask, remembering which hooks and views are plain functions (Flask asks
    ``inspect.iscoroutinefunction`` of every hook and view on every request, which cost more
    than some hooks), and noting each request's route rule in the WSGI environ for
    :mod:`provider.request_accounting` (no hook of its own)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._plain_functions: set[Callable[..., Any]] = set()

    def ensure_sync(self, func: Callable[..., Any]) -> Callable[..., Any]:
        if func in self._plain_functions:
            return func
        if iscoroutinefunction(func):
            return self.async_to_sync(func)
        self._plain_functions.add(func)
        return func

    def preprocess_request(self) -> Any:
        req = request_ctx.request
        if req.url_rule is not None:  # None: no route matched (counted as "unmatched")
            req.environ[ROUTE_KEY] = req.url_rule.rule
        return super().preprocess_request()


@dataclass
class Services:
    """Everything a route needs, built once by :func:`create_app`.

    ``chains`` holds one :class:`~provider.chains.Chain` per served chain id; routes pick the
    request's chain with :meth:`chain` (``chainId``) or :meth:`chain_of` (a DID). The
    ``chain_id``/``web3``/``addresses``/``assets``/``provider_*`` properties are the first
    chain's, for code that serves one chain only.
    """

    settings: Settings
    db: SqlEngine
    engine: EnginePort
    nonces: NonceStore
    chains: dict[int, Chain] = field(default_factory=dict)

    # -- picking the request's chain ------------------------------------------------------------
    def chain(self, chain_id: object, *, live: bool = True) -> Chain:
        """The served chain ``chain_id`` (text or int): 400 when not an integer or not served,
        503 when ``live`` and its node does not answer. It is the request's chain: a web3 error
        that escapes the request answers 503 naming it (:mod:`provider.errors`)."""
        number = parse_chain_id(chain_id)
        found = self.chains.get(number)
        if found is None:
            raise UnknownChain(number, sorted(self.chains))
        if has_request_context():
            g.tidewater_chain = found
        return found.ensure_live() if live else found

    def chain_of(self, did: str, *, live: bool = True) -> Chain | None:
        """The chain serving asset ``did``, or None when no chain knows it. 503 when the chain
        it was indexed on is down (unless not ``live``: reads of what is indexed), or when no
        reachable chain knows it while another chain is down (the DID may be that chain's:
        unknown is not the answer then)."""
        if len(self.chains) == 1:
            return self.chain(next(iter(self.chains)), live=live)
        hint = indexed_chain(self.db, did)
        if hint in self.chains:
            return self.chain(hint, live=live)
        outage: ChainUnavailable | None = None
        for chain_id, chain in self.chains.items():
            if chain.resolver is None:
                continue
            try:
                if live:
                    chain.ensure_live()
                if chain.resolver.resolve(did) is not None:
                    return self.chain(chain_id, live=live)
            except ChainUnavailable as exc:  # another chain's outage must not fail a found DID
                outage = outage or exc
        if outage is not None:
            raise outage
        return None

    def request_chain(self, raw_chain_id: object, did: object) -> Chain | None:
        """The chain a request acts on: its ``chainId`` when given, else its DID's chain."""
        if raw_chain_id not in (None, ""):
            return self.chain(raw_chain_id)
        if len(self.chains) == 1:
            return self.chain(next(iter(self.chains)))
        return self.chain_of(str(did)) if isinstance(did, str) and did else None

    # -- the first chain (single-chain code) ----------------------------------------------------
    @property
    def default_chain(self) -> Chain:
        return next(iter(self.chains.values()))

    @property
    def chain_id(self) -> int:
        return self.default_chain.chain_id

    @property
    def web3(self) -> Web3:
        return self.default_chain.web3

    @web3.setter
    def web3(self, client: Web3) -> None:
        self.default_chain.web3 = client

    @property
    def addresses(self) -> dict[str, Any]:
        return self.default_chain.addresses

    @property
    def assets(self) -> AssetResolver | None:
        return self.default_chain.resolver

    @assets.setter
    def assets(self, resolver: AssetResolver | None) -> None:
        self.default_chain.resolver = resolver

    @property
    def provider_account(self) -> LocalAccount:
        return self.default_chain.account

    def owned_job(self, owner: str, job_id: str | None, did: str | None = None) -> Job:
        """The job ``job_id`` when ``owner`` owns it (and, given ``did``, it read that asset);
        otherwise 404 — the same answer whether the job is missing or someone else's."""
        found = self.engine.find(owner, job_id=job_id, did=did) if job_id else []
        if not found:
            raise ProviderError("Job not found", 404)
        return found[0]

    @property
    def provider_address(self) -> str:
        return self.default_chain.provider_address


def services() -> Services:
    """The :class:`Services` of the current app."""
    return current_app.extensions["tidewater"]  # type: ignore[no-any-return]


def create_app(
    settings: Settings,
    *,
    engine: EnginePort | None = None,
    web3: Web3 | Mapping[int, Web3] | None = None,
    start_workers: bool = False,
) -> Flask:
    """Build the provider app. ``engine`` defaults to ``build_engine(settings)``;
    ``web3`` (tests, one chain) to a client of each chain's URL (see :func:`build_chains`).
    ``start_workers`` starts the engine's worker threads (``tidewater serve`` does)."""
    settings.require_private_key()
    chains = build_chains(settings, web3)
    if engine is None:
        from tidewater.engine_config import build_engine

        engine = build_engine(settings)  # mypy: Engine implements EnginePort
    install_fee_token_rules(engine.registry, chains, single=0 in settings.rpc_urls())
    app = ProviderFlask("provider")
    app.config["MAX_CONTENT_LENGTH"] = 16 * 1024 * 1024
    svc = Services(
        settings=settings,
        db=engine.db,
        engine=engine,
        nonces=NonceStore(engine.db),
        chains=chains,
    )
    app.extensions["tidewater"] = svc
    for chain in chains.values():
        chain.resolver = build_resolver(svc, chain)
    register_error_handlers(app)
    app.wsgi_app = RequestAccounting(app.wsgi_app)  # type: ignore[method-assign]
    install_metrics(app)
    install_json_limits(app)
    app.json.sort_keys = False  # type: ignore[attr-defined]
    from provider.blueprints import BLUEPRINTS  # the route modules import this one

    for blueprint in BLUEPRINTS:
        app.register_blueprint(blueprint)
    if start_workers:
        engine.start(settings.workers)

    return app
