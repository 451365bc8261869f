"""Checks of one asset and of request fields that download, fileinfo, initialize and compute
share: a service's encrypted files, the DDO's credentials, a container section, JSON fields."""

from __future__ import annotations

from typing import Any

import ecies

from contracts_abi.checksums import is_sha256_digest
from provider import json_limits
from provider.errors import RequestValidationError, ResourceError

CONTAINER_TEXT_FIELDS = ("entrypoint", "image", "tag", "checksum")


def decrypt_files(private_key: str, ciphertext: Any) -> dict[str, Any]:
    """The plaintext ``{"datatokenAddress", "nftAddress", "files"}`` of a service's ``files``."""
    if not isinstance(ciphertext, str) or not ciphertext.startswith("0x"):
        raise ValueError("service files are not 0x-hex ciphertext")
    plain = ecies.decrypt(private_key, bytes.fromhex(ciphertext[2:]))
    payload = json_limits.loads(plain.decode("utf-8"))
    if not isinstance(payload, dict) or not isinstance(payload.get("files"), list):
        raise ValueError("decrypted files are not a {files: [...]} object")
    return payload


def parse_json_field(value: Any, name: str) -> dict[str, Any] | None:
    """``userdata`` / ``algocustomdata``: an object, or a JSON text of one."""
    if value is None or value == "":
        return None
    if isinstance(value, str):
        try:
            value = json_limits.loads(value)
        except ValueError:
            raise RequestValidationError({name: [f"The {name} field must be JSON."]}) from None
    if not isinstance(value, dict):
        raise RequestValidationError({name: [f"The {name} field must be an object."]})
    return value


def same_address(a: Any, b: Any) -> bool:
    return isinstance(a, str) and isinstance(b, str) and a.lower() == b.lower()


def check_credentials(ddo: dict[str, Any], requester: str, resource: str) -> None:
    """Apply the DDO's ``credentials`` allow/deny lists (type ``address``)."""
    credentials = ddo.get("credentials") or {}
    if not isinstance(credentials, dict):
        return

    def addresses(kind: str) -> list[str] | None:
        entries = [
            e
            for e in credentials.get(kind) or []
            if isinstance(e, dict) and e.get("type") == "address"
        ]
        if not entries:
            return None
        return [str(v).lower() for e in entries for v in e.get("values") or []]

    deny = addresses("deny")
    if deny is not None and requester.lower() in deny:
        raise ResourceError(resource, "access_denied")
    allow = addresses("allow")
    if allow is not None and requester.lower() not in allow:
        raise ResourceError(resource, "access_denied")


def check_container(container: Any, prefix: str = "algorithm.container.") -> dict[str, Any]:
    """A container section ``{entrypoint, image, tag?, checksum}`` (docs/protocol.md §6), copied.

    Missing parts → ``missing_entrypoint_image_checksum``; a part that is not a string → 400
    naming ``prefix + part``; a checksum without ``sha256:`` → ``checksum_prefix``."""
    if not isinstance(container, dict):
        raise ResourceError("algorithm.container", "missing_entrypoint_image_checksum")
    wrong = {
        f"{prefix}{key}": [f"The {prefix}{key} field must be a string."]
        for key in CONTAINER_TEXT_FIELDS
        if container.get(key) is not None and not isinstance(container[key], str)
    }
    if wrong:
        raise RequestValidationError(wrong)
    if not all(container.get(k) for k in ("entrypoint", "image", "checksum")):
        raise ResourceError("algorithm.container", "missing_entrypoint_image_checksum")
    if not is_sha256_digest(container["checksum"]):
        raise ResourceError("algorithm.container", "checksum_prefix")
    return dict(container)
