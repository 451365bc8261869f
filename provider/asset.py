"""The resolved asset every DDO source returns: the DDO plus the on-chain facts checked."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

#: Metadata states (docs/protocol.md §7).
STATE_ACTIVE = 0
STATE_END_OF_LIFE = 1
STATE_DEPRECATED = 2
STATE_REVOKED = 3
STATE_ORDERING_DISABLED = 4
STATE_UNLISTED = 5


@dataclass(frozen=True)
class Asset:
    """A resolved asset: its DDO and the on-chain facts the provider checks."""

    did: str
    ddo: dict[str, Any]
    state: int
    nft_address: str
    nft_owner: str
    chain_id: int

    @property
    def services(self) -> list[dict[str, Any]]:
        services = self.ddo.get("services")
        return services if isinstance(services, list) else []

    def service(self, service_id: str) -> tuple[int, dict[str, Any]] | None:
        """(position, service) of the service called ``service_id``, or None: the one lookup of
        a DDO's service by id."""
        for index, service in enumerate(self.services):
            if isinstance(service, dict) and service.get("id") == service_id:
                return index, service
        return None

    def require_service(self, service_id: str, missing: Exception) -> tuple[int, dict[str, Any]]:
        """(position, service) of the service called ``service_id``; raises ``missing`` (the
        route's answer) when the DDO has none."""
        found = self.service(service_id)
        if found is None:
            raise missing
        return found

    @property
    def asset_type(self) -> str:
        return str((self.ddo.get("metadata") or {}).get("type") or "")
