"""DDO builders: Ocean V4 DDOs for datasets and algorithms, as the tests, the demo and tools
publish them (docs/protocol.md §7), and the plaintext of a service's encrypted ``files``."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from web3 import Web3

from contracts_abi.checksums import container_section_checksum, files_checksum
from contracts_abi.did import compute_did

DDO_VERSION = "4.1.0"


def _checksum(address: str) -> str:
    return str(Web3.to_checksum_address(address))


def _now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def default_service_id(datatoken_address: str, service_type: str) -> str:
    """A stable service id: sha256 hex of datatoken address + service type."""
    return hashlib.sha256(f"{_checksum(datatoken_address)}{service_type}".encode()).hexdigest()


def trusted_algorithm(algorithm_ddo: Mapping[str, Any], files: Sequence[bytes]) -> dict[str, str]:
    """A ``publisherTrustedAlgorithms`` entry for ``algorithm_ddo`` whose files are ``files``."""
    container = algorithm_ddo["metadata"]["algorithm"]["container"]
    return {
        "did": algorithm_ddo["id"],
        "filesChecksum": files_checksum(files),
        "containerSectionChecksum": container_section_checksum(container),
    }


def _service(
    *,
    service_id: str | None,
    service_type: str,
    datatoken_address: str,
    service_endpoint: str,
    files: str,
    timeout: int,
    compute: Mapping[str, Any] | None,
    name: str | None = None,
) -> dict[str, Any]:
    if service_type not in ("compute", "access"):
        raise ValueError(f"service type must be 'compute' or 'access', not {service_type!r}")
    service: dict[str, Any] = {
        "id": service_id or default_service_id(datatoken_address, service_type),
        "type": service_type,
        "files": files,
        "datatokenAddress": _checksum(datatoken_address),
        "serviceEndpoint": service_endpoint,
        "timeout": int(timeout),
    }
    if name:
        service["name"] = name
    if service_type == "compute":
        service["compute"] = dict(
            compute
            or {
                "allowRawAlgorithm": False,
                "allowNetworkAccess": False,
                "publisherTrustedAlgorithmPublishers": [],
                "publisherTrustedAlgorithms": [],
            }
        )
    return service


def _ddo(
    *,
    nft_address: str,
    chain_id: int,
    owner: str,
    metadata: dict[str, Any],
    services: list[dict[str, Any]],
    credentials: Mapping[str, Any] | None,
) -> dict[str, Any]:
    nft = _checksum(nft_address)
    ddo: dict[str, Any] = {
        "@context": ["https://w3id.org/did/v1"],
        "id": compute_did(nft, chain_id),
        "version": DDO_VERSION,
        "chainId": int(chain_id),
        "nftAddress": nft,
        "metadata": metadata,
        "services": services,
        "nft": {"address": nft, "owner": _checksum(owner), "state": 0},
    }
    if credentials is not None:
        ddo["credentials"] = dict(credentials)
    return ddo


def dataset_ddo(
    *,
    nft_address: str,
    chain_id: int,
    owner: str,
    datatoken_address: str,
    files: str,
    service_endpoint: str,
    name: str = "tidewater dataset",
    description: str = "A dataset published with tidewater",
    author: str = "tidewater",
    license: str = "CC0: PublicDomain",
    service_type: str = "compute",
    service_id: str | None = None,
    timeout: int = 0,
    allow_raw_algorithm: bool = False,
    allow_network_access: bool = False,
    trusted_algorithm_publishers: Sequence[str] = (),
    trusted_algorithms: Sequence[Mapping[str, str]] = (),
    credentials: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """A V4 dataset DDO with one service (``compute`` by default).

    ``files`` is the ``0x…`` ciphertext from the provider's encrypt endpoint (or
    :func:`encrypt_files_locally`).
    """
    created = _now_iso()
    compute = {
        "allowRawAlgorithm": allow_raw_algorithm,
        "allowNetworkAccess": allow_network_access,
        "publisherTrustedAlgorithmPublishers": [_checksum(a) for a in trusted_algorithm_publishers],
        "publisherTrustedAlgorithms": [dict(t) for t in trusted_algorithms],
    }
    metadata = {
        "created": created,
        "updated": created,
        "type": "dataset",
        "name": name,
        "description": description,
        "author": author,
        "license": license,
    }
    service = _service(
        service_id=service_id,
        service_type=service_type,
        datatoken_address=datatoken_address,
        service_endpoint=service_endpoint,
        files=files,
        timeout=timeout,
        compute=compute,
    )
    return _ddo(
        nft_address=nft_address,
        chain_id=chain_id,
        owner=owner,
        metadata=metadata,
        services=[service],
        credentials=credentials,
    )


def algorithm_ddo(
    *,
    nft_address: str,
    chain_id: int,
    owner: str,
    datatoken_address: str,
    files: str,
    service_endpoint: str,
    container: Mapping[str, str],
    name: str = "tidewater algorithm",
    description: str = "An algorithm published with tidewater",
    author: str = "tidewater",
    license: str = "CC0: PublicDomain",
    language: str = "python",
    version: str = "0.1",
    service_type: str = "access",
    service_id: str | None = None,
    timeout: int = 0,
    credentials: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """A V4 algorithm DDO; ``container`` is ``{entrypoint, image, tag, checksum}``."""
    missing = [k for k in ("entrypoint", "image", "tag", "checksum") if k not in container]
    if missing:
        raise ValueError(f"algorithm container lacks {', '.join(missing)}")
    created = _now_iso()
    metadata = {
        "created": created,
        "updated": created,
        "type": "algorithm",
        "name": name,
        "description": description,
        "author": author,
        "license": license,
        "algorithm": {
            "language": language,
            "version": version,
            "container": {k: container[k] for k in ("entrypoint", "image", "tag", "checksum")},
        },
    }
    service = _service(
        service_id=service_id,
        service_type=service_type,
        datatoken_address=datatoken_address,
        service_endpoint=service_endpoint,
        files=files,
        timeout=timeout,
        compute=None,
    )
    return _ddo(
        nft_address=nft_address,
        chain_id=chain_id,
        owner=owner,
        metadata=metadata,
        services=[service],
        credentials=credentials,
    )


def files_payload(
    datatoken_address: str, nft_address: str, files: Sequence[Mapping[str, Any]]
) -> dict[str, Any]:
    """The plaintext the provider encrypts into a service's ``files`` (docs/protocol.md §7)."""
    return {
        "datatokenAddress": _checksum(datatoken_address),
        "nftAddress": _checksum(nft_address),
        "files": [dict(f) for f in files],
    }
