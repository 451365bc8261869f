"""``POST /api/services/decrypt``: return a DDO that was published encrypted for this provider.

Signed (docs/protocol.md §3): ``(transactionId or dataNftAddress) + decrypterAddress + chainId``
followed by the nonce. Only authorised decrypters may call it: the provider's own address plus
the addresses in ``AUTHORIZED_DECRYPTERS`` (e.g. the metadata cache indexing this provider's
assets), so no third party can read encrypted DDOs; anyone else gets 403
``Decrypter not authorized``.

The document comes from the ``MetadataCreated``/``MetadataUpdated`` log the data NFT emitted in
``transactionId``, or from ``encryptedDocument`` + ``flags`` + ``documentHash`` in the body; the
NFT must come from the Ocean factory, its metadata state must allow access (end-of-life,
deprecated and revoked → 403), and the plain document must match its sha256 hash.
Answer: 201 ``text/plain`` with the document.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from flask import Blueprint, Response
from flask.typing import ResponseReturnValue
from web3.exceptions import TransactionNotFound
from web3.logs import DISCARD

from contracts_abi import contract
from provider.app import services
from provider.chains import Chain
from provider.errors import ProviderError, RequestValidationError
from provider.metadata import (
    HashMismatch,
    MetadataError,
    Undecompressable,
    Undecryptable,
    plain_document,
)
from provider.params import (
    address_param,
    is_digits,
    lookup,
    request_params,
    require,
    text_param,
)
from provider.request_auth import decrypt_text, verify_request

bp = Blueprint("decrypt", __name__)

_STATE_REFUSED = {1: "Asset end of life", 2: "Asset deprecated", 3: "Asset revoked"}
_STATE_ALLOWED = {0, 4, 5}


def authorized_decrypters(chain: Chain, allowed: tuple[str, ...]) -> set[str]:
    """Lowercased addresses allowed to decrypt: the chain's provider and ``allowed``
    (``AUTHORIZED_DECRYPTERS``)."""
    return {chain.provider_address.lower(), *allowed}


def _hex_bytes(params: dict[str, Any], name: str) -> bytes:
    text = text_param(params, name) or ""
    try:
        return bytes.fromhex(text.removeprefix("0x"))
    except ValueError:
        raise RequestValidationError({name: [f"The {name} field must be 0x hex."]}) from None


def _from_body(params: dict[str, Any]) -> tuple[bytes, int, bytes]:
    require(params, "encryptedDocument", "flags", "documentHash")
    flags_text = text_param(params, "flags") or ""
    if not is_digits(flags_text) or int(flags_text) > 255:
        raise RequestValidationError({"flags": ["The flags field must be an integer 0-255."]})
    return (
        _hex_bytes(params, "encryptedDocument"),
        int(flags_text),
        _hex_bytes(params, "documentHash"),
    )


def _from_transaction(chain: Chain, tx_id: str, nft: Any) -> tuple[bytes, int, bytes]:
    try:
        receipt = chain.web3.eth.get_transaction_receipt(tx_id)
    except (TransactionNotFound, ValueError):
        raise ProviderError("Failed to process transaction id.", 400) from None
    found = []
    for name in ("MetadataCreated", "MetadataUpdated"):
        event = getattr(nft.events, name)()
        found += [
            e
            for e in event.process_receipt(receipt, errors=DISCARD)
            if e.address.lower() == nft.address.lower()
        ]
    if not found:
        raise ProviderError("Failed to process transaction id.", 400)
    args = found[0].args
    flags = bytes(args["flags"])
    return bytes(args["data"]), flags[0] if flags else 0, bytes(args["metaDataHash"])


_ANSWERS: dict[type[MetadataError], str] = {
    Undecryptable: "Failed to decrypt.",
    Undecompressable: "Failed to decompress",
    HashMismatch: "Checksum doesn't match.",
}


def _plain_document(chain: Chain, blob: bytes, flags: int, digest: bytes) -> bytes:
    try:
        return plain_document(flags, blob, digest, chain.private_key)
    except MetadataError as exc:
        raise ProviderError(_ANSWERS[type(exc)], 400) from None


@bp.post("/api/services/decrypt")
def decrypt() -> ResponseReturnValue:
    svc = services()
    params = request_params()
    require(params, "decrypterAddress", "chainId", "dataNftAddress")
    decrypter = address_param(params, "decrypterAddress")
    nft_address = address_param(params, "dataNftAddress")
    assert decrypter is not None and nft_address is not None
    chain_text = text_param(params, "chainId") or ""
    tx_id = text_param(params, "transactionId")
    chain = svc.chain(chain_text, live=False)
    from_body = None if tx_id else _from_body(params)
    verify_request(
        decrypter,
        lookup(params, "signature"),
        lookup(params, "nonce"),
        partial(decrypt_text, tx_id or nft_address, decrypter, chain_text),
        store=svc.nonces,
        address_field="decrypterAddress",
    )
    if decrypter.lower() not in authorized_decrypters(chain, svc.settings.authorized_decrypters):
        raise ProviderError("Decrypter not authorized", 403)
    factory_address = chain.addresses.get("ERC721Factory")
    if not factory_address:
        raise ProviderError(
            f"the data NFT factory address of chain {chain.chain_id} is not configured", 503
        )
    chain.ensure_live()  # from here a web3 error answers 503 naming the chain (provider.errors)
    nft = contract(chain.web3, "ERC721Template", nft_address)
    factory = contract(chain.web3, "ERC721Factory", factory_address)
    if factory.functions.erc721List(nft.address).call().lower() != nft.address.lower():
        raise ProviderError("Asset not deployed by the data NFT factory.", 400)
    if from_body is None:
        blob, flags, digest = _from_transaction(chain, str(tx_id), nft)
    else:
        blob, flags, digest = from_body
    state = int(nft.functions.getMetaData().call()[2])
    if state in _STATE_REFUSED:
        raise ProviderError(_STATE_REFUSED[state], 403)
    if state not in _STATE_ALLOWED:
        raise ProviderError("Invalid MetadataState", 400)
    return Response(_plain_document(chain, blob, flags, digest), 201, content_type="text/plain")
