"""Checksums: the ``sha256:`` digests of container images, and those publishers put in
``publisherTrustedAlgorithms`` for the provider to verify. The one owner of the ``sha256:``
prefix rule (the provider's validation, the engine's provisioning and its Docker backend)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from typing import Any

#: How a container section writes its image digest (``sha256:<64 hex>``).
SHA256_PREFIX = "sha256:"


def is_sha256_digest(checksum: str) -> bool:
    """True when ``checksum`` has the ``sha256:`` prefix a container checksum must carry.

    >>> is_sha256_digest("sha256:" + "ab" * 32), is_sha256_digest("ab" * 32)
    (True, False)
    """
    return checksum.startswith(SHA256_PREFIX)


def digest_hex(value: str) -> str:
    """The hex of a sha256 digest written with or without ``sha256:`` or ``0x``.

    >>> digest_hex("sha256:00ff"), digest_hex("0x00ff"), digest_hex("00ff")
    ('00ff', '00ff', '00ff')
    """
    return value.removeprefix(SHA256_PREFIX).removeprefix("0x")


def files_checksum(files: Iterable[bytes]) -> str:
    """Concatenated lowercase sha256 hex of each file's bytes, in order.

    >>> files_checksum([b"a", b""])[:8], len(files_checksum([b"a", b""]))
    ('ca978112', 128)
    """
    return "".join(hashlib.sha256(content).hexdigest() for content in files)


def container_section_checksum(container: Mapping[str, Any]) -> str:
    """sha256 hex of the container's ``entrypoint + checksum`` (both as given in the DDO).

    >>> container_section_checksum({"entrypoint": "python $ALGO", "checksum": "sha256:00"})[:12]
    '1e899894c5d9'
    """
    text = f"{container.get('entrypoint', '')}{container.get('checksum', '')}"
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
