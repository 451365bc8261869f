"""DDO resolution: ``AssetResolver.resolve(did) -> Asset | None`` in one lookup.

Backed by the embedded indexer (provider/indexer.py) by default, or by an Aquarius instance
(``AQUARIUS_URL``: ``GET {url}/api/aquarius/assets/ddo/<did>``) when configured.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Protocol

import requests

from provider.asset import Asset
from provider.chain import ChainUnavailable
from provider.indexer import Indexer

if TYPE_CHECKING:
    from provider.app import Services
    from provider.chains import Chain

log = logging.getLogger(__name__)


class AssetResolver(Protocol):
    def resolve(self, did: str) -> Asset | None: ...


class IndexerResolver:
    """Resolves from the embedded indexer, caught up with the chain first.

    Every lookup first indexes blocks mined since the last catch-up (at most one catch-up per
    ``max_age`` seconds), so a DDO update or a state change (revoked, deprecated…) is seen by
    the next request, not only by a lookup that misses.
    """

    def __init__(self, indexer: Indexer, max_age: float = 1.0) -> None:
        self.indexer = indexer
        self.max_age = max_age
        self._synced_at = float("-inf")

    def resolve(self, did: str) -> Asset | None:
        if time.monotonic() - self._synced_at < self.max_age:
            found = self.indexer.get(did)
            if found is not None:
                return found
        outage: ChainUnavailable | None = None
        try:
            self.indexer.sync()
            self._synced_at = time.monotonic()
        except ChainUnavailable as exc:  # an outage serves what is indexed, logged
            log.warning("indexer catch-up failed: %s", exc)  # it names the chain
            outage = exc
        except Exception as exc:
            log.warning("indexer catch-up failed: %s", exc)
        found = self.indexer.get(did)
        if found is None and outage is not None:
            raise outage  # not indexed yet: the chain's fault (503), not an unknown DID (400)
        return found


class AquariusResolver:
    """Resolves through an Aquarius-compatible HTTP API."""

    def __init__(self, base_url: str, timeout: float = 5.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout

    def resolve(self, did: str) -> Asset | None:
        try:
            response = requests.get(
                f"{self.base_url}/api/aquarius/assets/ddo/{did}", timeout=self.timeout
            )
        except requests.RequestException as exc:
            log.warning("aquarius lookup of %s failed: %s", did, exc)
            return None
        if response.status_code != 200:
            return None
        try:
            ddo = response.json()
        except ValueError:
            return None
        if not isinstance(ddo, dict) or ddo.get("id") != did:
            return None
        nft = ddo.get("nft") or {}
        return Asset(
            did=did,
            ddo=ddo,
            state=int(nft.get("state") or 0),
            nft_address=str(ddo.get("nftAddress") or nft.get("address") or ""),
            nft_owner=str(nft.get("owner") or ""),
            chain_id=int(ddo.get("chainId") or 0),
        )


def build_resolver(services: Services, chain: Chain) -> AssetResolver | None:
    """``chain``'s resolver (None without its factory address): its own indexer, or the
    shared Aquarius when ``AQUARIUS_URL`` is set (only this chain's assets count)."""
    settings = services.settings
    if settings.aquarius_url:
        return ChainFilter(AquariusResolver(settings.aquarius_url), chain.chain_id)
    factory = (chain.addresses or {}).get("ERC721Factory")
    if not factory or chain.web3 is None:
        return None
    indexer = Indexer(
        chain.web3,
        services.db,
        factory=factory,
        chain_id=chain.chain_id,
        private_key=chain.private_key,
        start_block=int(chain.addresses.get("startBlock") or 0),
    )
    return IndexerResolver(indexer)


class ChainFilter:
    """Resolves through ``inner``, answering only assets of ``chain_id``."""

    def __init__(self, inner: AssetResolver, chain_id: int) -> None:
        self.inner = inner
        self.chain_id = chain_id

    def resolve(self, did: str) -> Asset | None:
        found = self.inner.resolve(did)
        if found is None or found.chain_id not in (self.chain_id, 0):  # 0: DDO names no chain
            return None
        return found
