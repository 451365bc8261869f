"""The provider's application factory.

:func:`create_app` builds everything the routes use (job engine, nonce store, provider key,
chain client, asset resolver) and hangs it on ``app.extensions["tidewater"]`` as
:class:`Services`; nothing is built at import time. Routes reach it with :func:`services`.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from inspect import iscoroutinefunction
from typing import Any

from eth_account import Account
from eth_account.signers.local import LocalAccount
from flask import Flask, Response, current_app, request
from sqlalchemy import Engine as SqlEngine

from provider.chain import guard_chain
from provider.errors import register_error_handlers
from provider.json_limits import install_json_limits
from provider.logs import install_request_logging
from provider.metrics import install_metrics
from provider.nonces import NonceStore
from tidewater import __version__
from tidewater.settings import Settings

SOFTWARE = "tidewater"
VERSION = __version__

#: Route modules (each exports ``bp``), registered in this order. provider-core: root, nonce,
#: encrypt, decrypt, jobs, results, environments, files, openapi; provider-compute: initialize,
#: compute_start. A listed module that does not exist yet is skipped.
BLUEPRINTS: tuple[str, ...] = (
    "provider.routes.root",
    "provider.routes.nonce",
    "provider.routes.encrypt",
    "provider.routes.decrypt",
    "provider.routes.jobs",
    "provider.routes.results",
    "provider.routes.receipts",
    "provider.routes.environments",
    "provider.routes.files",
    "provider.routes.access",
    "provider.routes.aquarius",
    "provider.routes.openapi",
    "provider.routes.initialize",
    "provider.routes.compute_start",
    "provider.admin.routes",
    "provider.node",
)

_CORS_METHODS = "GET, POST, PUT, DELETE, OPTIONS"
_CORS_EXPOSE = "Content-Disposition, Content-Length, Content-Range, Accept-Ranges, X-Request-Id"
#: Preflights that name no headers still get these (ocean.js 8 sends Authorization and Range).
_CORS_HEADERS = "Content-Type, Authorization, Range"
RPC_TIMEOUT_S = 10.0


class ProviderFlask(Flask):
    """Flask, remembering which hooks and views are plain functions: Flask asks
    ``inspect.iscoroutinefunction`` of every hook and view on every request (seven per
    request here), which cost more than some of the hooks themselves."""

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


class ChainUnavailableError(RuntimeError):
    """The chain at NETWORK_URL did not answer; the message is one line naming it."""


@dataclass
class Services:
    """Everything a route needs, built once by :func:`create_app`."""

    settings: Settings
    db: SqlEngine
    engine: Any
    provider_account: LocalAccount
    nonces: NonceStore
    chain_id: int
    addresses: dict[str, Any] = field(default_factory=dict)
    assets: Any = None
    _web3: Any = field(default=None, repr=False)

    @property
    def web3(self) -> Any:
        """The chain client (``web3.Web3``), built on first use from ``settings.network_url``."""
        if self._web3 is None:
            self._web3 = build_web3(self.settings.network_url)
            guard_chain(self._web3, self.chain_id)
        return self._web3

    @web3.setter
    def web3(self, value: Any) -> None:
        self._web3 = value

    @property
    def provider_address(self) -> str:
        return str(self.provider_account.address)


def services() -> Services:
    """The :class:`Services` of the current app."""
    return current_app.extensions["tidewater"]  # type: ignore[no-any-return]


def build_web3(url: str) -> Any:
    from web3 import Web3

    return Web3(Web3.HTTPProvider(url, request_kwargs={"timeout": RPC_TIMEOUT_S}))


def _chain_id(settings: Settings, web3: Any) -> tuple[int, Any]:
    if web3 is None:
        web3 = build_web3(settings.network_url)
    try:
        return int(web3.eth.chain_id), web3
    except Exception as exc:  # any transport failure: one line naming the URL
        raise ChainUnavailableError(
            f"the chain at NETWORK_URL={settings.network_url} is unreachable "
            f"({type(exc).__name__}): start it (`tidewater chain`) or fix NETWORK_URL"
        ) from None


def _addresses(settings: Settings, chain_id: int) -> dict[str, Any]:
    try:
        from contracts_abi.deploy import read_address_file
        from contracts_abi.errors import AddressFileError
    except ImportError:
        return {}
    try:
        return read_address_file(settings.address_file, chain_id)
    except AddressFileError:
        return {}


def _import_optional(name: str) -> Any | None:
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name != name:
            raise
        return None


def _install_cors(app: Flask) -> None:
    # dApp frontends call from browsers: every route, errors and preflights included.
    @app.after_request
    def _cors(response: Response) -> Response:
        headers = response.headers
        headers["Access-Control-Allow-Origin"] = "*"
        headers["Access-Control-Expose-Headers"] = _CORS_EXPOSE
        if request.method == "OPTIONS":
            headers["Access-Control-Allow-Methods"] = _CORS_METHODS
            asked = request.headers.get("Access-Control-Request-Headers")
            headers["Access-Control-Allow-Headers"] = asked or _CORS_HEADERS
            headers["Access-Control-Max-Age"] = "600"
        return response


def create_app(
    settings: Settings,
    *,
    engine: Any = None,
    web3: Any = None,
    start_workers: bool = False,
) -> Flask:
    """Build the provider app. ``engine`` defaults to ``Engine.from_settings(settings)``;
    ``web3`` to a client of ``settings.network_url`` (which must answer: its chain id is read
    now). ``start_workers`` starts the engine's worker threads (``tidewater serve`` does)."""
    account = Account.from_key(settings.require_private_key())
    chain_id, web3 = _chain_id(settings, web3)
    guard_chain(web3, chain_id)  # RPC outages answer 503 naming the chain, never 400/500
    if engine is None:
        from operator_engine.api import Engine

        engine = Engine.from_settings(settings)
    app = ProviderFlask("provider")
    app.config["MAX_CONTENT_LENGTH"] = 16 * 1024 * 1024
    svc = Services(
        settings=settings,
        db=engine.db,
        engine=engine,
        provider_account=account,
        nonces=NonceStore(engine.db),
        chain_id=chain_id,
        addresses=_addresses(settings, chain_id),
        _web3=web3,
    )
    app.extensions["tidewater"] = svc
    assets = _import_optional("provider.assets")
    if assets is not None and hasattr(assets, "build_resolver"):
        svc.assets = assets.build_resolver(svc)
    register_error_handlers(app)
    install_request_logging(app)
    install_metrics(app)
    install_json_limits(app)  # after the request id and the metrics clock are set
    app.json.sort_keys = False  # type: ignore[attr-defined]
    _install_cors(app)
    for name in BLUEPRINTS:
        module = _import_optional(name)
        if module is not None:
            app.register_blueprint(module.bp)
    if start_workers:
        engine.start(settings.workers)
    return app
