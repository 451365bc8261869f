"""The on-chain DDO encoding of ``setMetaData`` (docs/protocol.md §7), read back: one decoder
for the indexer and the decrypt endpoint.

Flags (the format :mod:`contracts_abi.publish` writes): bit 0 = lzma-compressed, bit 1 =
ECIES-encrypted for the provider; ``metaDataHash`` is the sha256 of the plain document.
"""

from __future__ import annotations

import hashlib
import lzma

from contracts_abi.publish import FLAG_COMPRESSED, FLAG_ENCRYPTED
from provider.crypto import DecryptionError, decrypt_with_key


class MetadataError(ValueError):
    """The document of a Metadata event cannot be read or trusted."""


class Undecryptable(MetadataError):
    """Encrypted, but not for this provider's key (or no key is configured)."""


class Undecompressable(MetadataError):
    """Flagged as compressed, but not lzma data."""


class HashMismatch(MetadataError):
    """The plain document does not hash to ``metaDataHash``."""


def plain_document(flags: int, data: bytes, metadata_hash: bytes, private_key: str | None) -> bytes:
    """Decrypt and decompress ``data`` as ``flags`` say, then check it against its hash."""
    document = bytes(data)
    if flags & FLAG_ENCRYPTED:
        if not private_key:
            raise Undecryptable("encrypted DDO but no provider key")
        try:
            document = decrypt_with_key(private_key, document)
        except DecryptionError as exc:
            raise Undecryptable(str(exc)) from None
    if flags & FLAG_COMPRESSED:
        try:
            document = lzma.decompress(document)
        except lzma.LZMAError:
            raise Undecompressable("the DDO is flagged compressed but is not lzma data") from None
    if hashlib.sha256(document).digest() != bytes(metadata_hash):
        raise HashMismatch("metaDataHash does not match the sha256 of the DDO")
    return document
