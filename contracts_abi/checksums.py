"""Checksums publishers put in ``publisherTrustedAlgorithms`` and the provider verifies."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from typing import Any


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
