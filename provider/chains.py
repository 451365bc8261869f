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
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from eth_account.signers.local import LocalAccount

from operator_engine.environments import EnvironmentConfigError, FeeTokenRule, FeeTokenUnchecked
from operator_engine.models import ComputeEnvironment
from provider.chain import ChainUnavailable
from provider.errors import ProviderError, RequestValidationError
from provider.params import is_digits

log = logging.getLogger(__name__)

#: A chain that answered is not asked again for this many seconds.
LIVE_FOR_S = 1.0


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
    resolver: Any = None
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


def parse_chain_id(raw: object, name: str = "chainId") -> int:
    """A request's chain id (text or number) as an int; 400 when it is not an integer."""
    text = str(getattr(raw, "text", None) or raw).strip()
    if not is_digits(text):
        raise RequestValidationError({name: [f"The {name} field must be an integer."]})
    return int(text)
