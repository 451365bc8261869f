"""The chains one provider serves: a :class:`Chain` per chain id, and how a request picks one.

``NETWORK_URL`` is one RPC URL (its chain id is read from the node at start-up) or a JSON
object chain id → URL; each chain has its web3 client, its address-file entry, the provider
account that signs its fees and decrypts for it (``PROVIDER_PRIVATE_KEY``: one key for every
chain, or one per chain) and its DDO resolver (its own indexer).

A request names its chain with ``chainId`` or through a DID (an Ocean DID is
sha256(checksummed NFT address + chain id), found in the chains' indexers). Errors map in one
place: an unknown chain id is :class:`UnknownChain` (400), a chain whose node does not answer
is :class:`provider.chain.ChainUnavailable` (503, naming the chain; each chain's client also
carries that module's outage guard). A chain that is down at start-up is logged and served as
unavailable until it answers; it never affects the other chains.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from eth_account import Account
from eth_account.signers.local import LocalAccount

from operator_engine.environments import (
    EnvironmentConfigError,
    EnvironmentRegistry,
    FeeTokenRule,
    FeeTokenUnchecked,
)
from operator_engine.models import ComputeEnvironment
from provider.chain import ChainUnavailable, guard_chain
from provider.errors import ProviderError, RequestValidationError
from provider.params import is_digits
from tidewater.settings import Settings

if TYPE_CHECKING:
    from provider.assets import AssetResolver

log = logging.getLogger(__name__)

#: A chain that answered is not asked again for this many seconds.
LIVE_FOR_S = 1.0
RPC_TIMEOUT_S = 10.0


class UnknownChain(ProviderError):
    """The request names a chain this provider does not serve (400)."""

    status_code = 400

    def __init__(self, chain_id: object, served: list[int]) -> None:
        listed = ", ".join(str(c) for c in served)
        super().__init__(f"Unsupported chain ID {chain_id}: this provider serves {listed}")


def host_of(url: str) -> str:
    """``host:port`` of an RPC URL, for logs (paths and query strings may carry API keys).

    >>> host_of("https://user:pw@rpc.example.org:8545/v3/secret")
    'rpc.example.org:8545'
    """
    parts = urlsplit(url)
    return f"{parts.hostname}:{parts.port}" if parts.port else str(parts.hostname)


@dataclass(eq=False)
class Chain:
    """One served chain: its client, contracts, provider account and DDO resolver."""

    chain_id: int
    url: str
    web3: Any
    account: LocalAccount
    addresses: dict[str, Any] = field(default_factory=dict)
    resolver: AssetResolver | None = None
    fee_tokens: FeeTokenRule | None = None
    _live_at: float = field(default=-math.inf, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def provider_address(self) -> str:
        return str(self.account.address)

    @property
    def private_key(self) -> str:
        """The 0x-hex key that signs this chain's provider fees and decrypts for it."""
        return "0x" + bytes(self.account.key).hex()

    def ensure_live(self) -> Chain:
        """This chain, once its node answered with its chain id (cached ``LIVE_FOR_S``);
        else :class:`ChainUnavailable`."""
        if time.monotonic() - self._live_at < LIVE_FOR_S:
            return self
        with self._lock:
            if time.monotonic() - self._live_at < LIVE_FOR_S:
                return self
            try:
                answered = int(self.web3.eth.chain_id)
            except ChainUnavailable:
                raise
            except Exception as exc:  # any transport failure means the same to the client
                raise ChainUnavailable(self.chain_id, exc) from None
            if answered != self.chain_id:
                raise ChainUnavailable(self.chain_id, f"its node answers chain id {answered}")
            self._live_at = time.monotonic()
        return self

    def mark_down(self) -> None:
        """Forget that the node answered: the next request asks it again."""
        self._live_at = -math.inf

    def offer(self, env: ComputeEnvironment) -> ComputeEnvironment:
        """``env`` as offered on this chain: its fee token on this chain, resolved and checked
        by the chain's fee-token rule (503 naming the chain when that cannot be done)."""
        if self.fee_tokens is None:
            return env.on_chain(self.chain_id)
        try:
            return self.fee_tokens.apply(env, f"environment {env.id!r}")
        except FeeTokenUnchecked:
            raise ChainUnavailable(
                self.chain_id, "its RPC endpoint did not answer the fee token check"
            ) from None
        except EnvironmentConfigError as exc:
            raise ProviderError(str(exc), 503) from None


class ChainUnavailableError(RuntimeError):
    """A chain needed at start-up did not answer; the message is one line naming it."""


def build_web3(url: str) -> Any:
    from web3 import Web3

    return Web3(Web3.HTTPProvider(url, request_kwargs={"timeout": RPC_TIMEOUT_S}))


def _node_chain_id(web3: Any) -> int | None:
    try:
        return int(web3.eth.chain_id)
    except Exception:  # any transport failure: the caller says which chain
        return None


def build_chains(settings: Settings, web3: Any = None) -> dict[int, Chain]:
    """One :class:`Chain` per configured chain (``web3``: a client for the one chain, or chain
    id → client; default a client of each chain's URL). A plain NETWORK_URL must answer now (its
    chain id is read from it); a chain of a JSON NETWORK_URL that is down is logged and served
    as unavailable. A node answering another chain id stops start-up."""
    chains: dict[int, Chain] = {}
    for configured, url in settings.rpc_urls().items():
        client = web3.get(configured) if isinstance(web3, Mapping) else web3
        if client is None:
            client = build_web3(url)
        answered = _node_chain_id(client)
        if configured == 0 and answered is None:
            raise ChainUnavailableError(
                f"the chain at NETWORK_URL={url} is unreachable: start it (`tidewater chain`) "
                "or fix NETWORK_URL"
            )
        if configured and answered is not None and answered != configured:
            raise ChainUnavailableError(
                f"NETWORK_URL: the node for chain {configured} ({host_of(url)}) is chain "
                f"{answered}: fix the chain id or the URL"
            )
        chain_id = configured or int(answered or 0)
        if answered is None:
            log.warning(
                "chain %s (%s) does not answer at start-up: its requests answer 503 until it "
                "does; the other chains are served",
                chain_id,
                host_of(url),
            )
        guard_chain(client, chain_id)  # its RPC outages answer 503 naming it
        chains[chain_id] = Chain(
            chain_id=chain_id,
            url=url,
            web3=client,
            account=Account.from_key(settings.private_key_for(chain_id)),
            addresses=_addresses(settings, chain_id),
        )
    return chains


def _addresses(settings: Settings, chain_id: int) -> dict[str, Any]:
    """``chain_id``'s address-file entry ({} when there is none: logged)."""
    try:
        from contracts_abi.deploy import read_address_file
        from contracts_abi.errors import AddressFileError
    except ImportError:
        return {}
    try:
        return read_address_file(settings.address_file, chain_id)
    except AddressFileError as exc:
        log.warning("chain %s: %s", chain_id, exc)
        return {}


def install_fee_token_rules(
    registry: EnvironmentRegistry, chains: dict[int, Chain], *, single: bool
) -> None:
    """Give each chain its fee-token rule (see
    :class:`~operator_engine.environments.FeeTokenRule`) and the engine's ``registry`` the rule
    that checks every environment: with a ``single`` chain (a plain NETWORK_URL, which
    answered) that chain's (tokens resolved, as listed), else
    :class:`~operator_engine.environments.ChainFeeTokens` (each chain resolves its own token
    when it offers an environment; a chain that is down is checked once it answers). A file
    environment whose token has no code on a chain that answers raises
    :class:`~operator_engine.environments.EnvironmentConfigError` now."""
    from operator_engine.environments import ChainFeeTokens
    from provider.fees import fee_token_rule

    rules = {
        chain_id: fee_token_rule(chain.web3, chain.addresses, chain_id)
        for chain_id, chain in chains.items()
    }
    for chain_id, chain in chains.items():
        chain.fee_tokens = rules[chain_id]
    only = next(iter(rules.values())) if single and len(rules) == 1 else None
    registry.fee_tokens = only or ChainFeeTokens(rules)
    registry.file_envs()


def check_environments(settings: Settings, chain_ids: list[int]) -> None:
    """Load the configured environments with the fee-token rules of ``chain_ids`` (the chains
    that answered), as ``create_app`` will; raises
    :class:`~operator_engine.environments.EnvironmentConfigError` (one line)."""
    urls = settings.rpc_urls()
    chains = {
        chain_id: Chain(
            chain_id=chain_id,
            url=urls.get(chain_id) or urls[0],
            web3=build_web3(urls.get(chain_id) or urls[0]),
            account=Account.from_key(settings.private_key_for(chain_id)),
            addresses=_addresses(settings, chain_id),
        )
        for chain_id in chain_ids
    }
    if chains:
        registry = EnvironmentRegistry(settings.environments_file, None)
        install_fee_token_rules(registry, chains, single=0 in urls)


def parse_chain_id(raw: object, name: str = "chainId") -> int:
    """A request's chain id (text or number) as an int; 400 when it is not an integer."""
    text = str(getattr(raw, "text", None) or raw).strip()
    if not is_digits(text):
        raise RequestValidationError({name: [f"The {name} field must be an integer."]})
    return int(text)
