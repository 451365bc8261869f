"""Request authentication: the text each signed request signs, and its verification.

The one owner of the signed-message layouts (docs/request-auth.md; docs/protocol.md §3, §6): routes
verify with them, and ``tidewater/client.py``, the tests and ``bench/`` sign with them, so a
client and the server cannot disagree. ``+`` is string concatenation; ``nonce`` is the nonce
text exactly as sent (:func:`provider.signatures.nonce_text`); addresses as sent.

V4 (``/api/services/*``; ocean.py 3, ocean.js 3) signs ``fields + nonce`` with EIP-191 over
``keccak256(utf8(text))`` (:func:`provider.signatures.sign_text`):

================================  ==============================================================
request                           signed text
================================  ==============================================================
compute start                     :func:`compute_start_text`: ``consumer + did + nonce``
stop, delete (ocean.py)           :func:`job_text`: ``consumer + jobId + (did or "") + nonce``
stop (ocean.js 3.4)               :func:`unsigned_nonce_stop_text`: ``consumer + jobId``
delete (ocean.js 3.4)             :func:`job_text` with ``nonce`` = stored + 1 (no nonce sent)
computeResult                     :func:`result_text`: ``consumer + jobId + index + nonce``
computeLogs                       :func:`logs_text`: ``consumer + jobId + nonce``
download (access)                 :func:`download_text`: ``did + nonce``
decrypt                           :func:`decrypt_text`: ``(txId or nft) + decrypter + chainId +
                                  nonce``
================================  ==============================================================

The C2D v2 API (``/node``; ocean.js 8) signs :func:`command_text`, ``address + nonce +
command`` (:data:`COMMANDS`; ``invalidateAuthToken`` signs no command), hashed as
:func:`provider.signatures.sign_command` does; ``/node``'s computeResult also takes the V4
:func:`result_text` signature.

Verification order: presence and format → the signature recovers the claimed address → the
nonce is consumed (:class:`provider.nonces.NonceStore`). A forged signature never moves anyone's
nonce.

>>> result_text("0xAb", "job1", 0, "7")
'0xAbjob107'
>>> command_text("0xAb", "7", "getComputeResult")
'0xAb7getComputeResult'
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from provider.errors import RequestValidationError, SignatureError
from provider.nonces import NonceStore, next_nonce, parse_nonce
from provider.params import is_missing
from provider.signatures import nonce_text, signed_by

#: Commands ocean.js 8 signs (:func:`command_text`); ``invalidateAuthToken`` signs none ("").
COMMANDS = frozenset(
    {
        "startCompute",
        "freeStartCompute",
        "stopCompute",
        "getComputeResult",
        "getComputeStreamableLogs",
        "createAuthToken",
    }
)

#: A V4 layout with every field but the nonce bound: ``nonce text → signed text``.
Layout = Callable[[str], str]


# -- layouts (pure) ----------------------------------------------------------------------------
def compute_start_text(consumer: str, did: str, nonce: str) -> str:
    """V4 compute start: ``consumerAddress + dataset.documentId + nonce``.

    >>> compute_start_text("0xAb", "did:op:1", "2")
    '0xAbdid:op:12'
    """
    return consumer + did + nonce


def job_text(consumer: str, job_id: str, did: str | None, nonce: str) -> str:
    """V4 stop and delete (ocean.py; ocean.js 3.4's delete with ``nonce`` = stored + 1):
    ``consumerAddress + jobId + (documentId or "") + nonce``.

    >>> job_text("0xAb", "j1", None, "3"), job_text("0xAb", "j1", "did:op:1", "3")
    ('0xAbj13', '0xAbj1did:op:13')
    """
    return consumer + job_id + (did or "") + nonce


def unsigned_nonce_stop_text(consumer: str, job_id: str) -> str:
    """V4 stop as ocean.js 3.4 signs it: ``consumerAddress + jobId`` (its nonce is not signed).

    >>> unsigned_nonce_stop_text("0xAb", "j1")
    '0xAbj1'
    """
    return consumer + job_id


def result_text(consumer: str, job_id: str, index: int | str, nonce: str) -> str:
    """V4 computeResult: ``consumerAddress + jobId + index + nonce`` (index in decimal).

    >>> result_text("0xAb", "j1", 2, "5")
    '0xAbj125'
    """
    return consumer + job_id + str(index) + nonce


def logs_text(consumer: str, job_id: str, nonce: str) -> str:
    """V4 computeLogs: ``consumerAddress + jobId + nonce`` (computeResult's without the index).

    >>> logs_text("0xAb", "j1", "5")
    '0xAbj15'
    """
    return consumer + job_id + nonce


def download_text(did: str, nonce: str) -> str:
    """V4 download (access service): ``documentId + nonce``.

    >>> download_text("did:op:1", "9")
    'did:op:19'
    """
    return did + nonce


def decrypt_text(tx_or_nft: str, decrypter: str, chain_id: int | str, nonce: str) -> str:
    """V4 decrypt: ``(transactionId or dataNftAddress) + decrypterAddress + chainId + nonce``
    (``chainId`` as sent).

    >>> decrypt_text("0xNft", "0xAb", 8996, "4")
    '0xNft0xAb89964'
    """
    return tx_or_nft + decrypter + str(chain_id) + nonce


def command_text(address: str, nonce: str, command: str) -> str:
    """C2D v2: ``address + nonce + command`` (address as sent; "" for invalidateAuthToken).

    >>> command_text("0xAb", "12", "stopCompute")
    '0xAb12stopCompute'
    """
    return address + nonce + command


# -- parameters ------------------------------------------------------------------------------
def require_signature(signature: Any) -> str:
    """The ``signature`` parameter as text; 400 when missing or not a string."""
    if is_missing(signature):
        raise RequestValidationError({"signature": ["The signature field is required."]})
    if not isinstance(signature, str):
        raise SignatureError("Invalid signature: expected 0x followed by 65 bytes of hex.")
    return signature


def nonce_param_text(nonce_raw: Any) -> str:
    """The ``nonce`` parameter as sent (its signed text); 400 when missing or malformed."""
    if nonce_raw is None or (isinstance(nonce_raw, str) and nonce_raw.strip() == ""):
        raise RequestValidationError({"nonce": ["The nonce field is required."]})
    try:
        text = nonce_text(nonce_raw)
    except TypeError:
        raise RequestValidationError({"nonce": ["The nonce field must be a number."]}) from None
    parse_nonce(text)
    return text


# -- verification ------------------------------------------------------------------------------
def signer_matches(address: str, signature: str, text: str) -> bool:
    """True when the V4 ``signature`` over ``text`` recovers to ``address`` (any case)."""
    return signed_by(address, signature, text)


def command_signer_matches(address: str, signature: str, text: str) -> bool:
    """True when the C2D v2 ``signature`` over ``text`` recovers to ``address`` (any case)."""
    return signed_by(address, signature, text, command=True)


def verify_request(
    address: str,
    signature: Any,
    nonce_raw: Any,
    layout: Layout,
    *,
    store: NonceStore,
    address_field: str = "consumerAddress",
) -> str:
    """Check a V4 request signed over ``layout(nonce)`` and consume its nonce (before any
    side effect). Returns the nonce text consumed; 400 otherwise."""
    signature = require_signature(signature)
    text = nonce_param_text(nonce_raw)
    if not signer_matches(address, signature, layout(text)):
        raise SignatureError(f"Invalid signature: the signer is not {address_field}.")
    store.consume(address, text)
    return text


def verify_with_next_nonce(
    address: str,
    signature: Any,
    layout: Layout,
    *,
    store: NonceStore,
    address_field: str = "consumerAddress",
) -> str:
    """Check a request signed over ``layout(stored + 1)`` (ocean.js delete, which sends no
    nonce field) and consume that nonce, so a replay fails."""
    signature = require_signature(signature)
    text = next_nonce(store.get(address))
    if not signer_matches(address, signature, layout(text)):
        raise SignatureError(f"Invalid signature: the signer is not {address_field}.")
    store.consume(address, text)
    return text


def verify_command(
    address: str,
    signature: Any,
    nonce_raw: Any,
    command: str,
    *,
    store: NonceStore,
    v4_layout: Layout | None = None,
) -> str:
    """Check a C2D v2 request signed over :func:`command_text` (or, when given, the V4
    ``v4_layout``) and consume its nonce in the store V4 shares. Returns the nonce text."""
    signature = require_signature(signature)
    text = nonce_param_text(nonce_raw)
    if not command_signer_matches(address, signature, command_text(address, text, command)) and (
        v4_layout is None or not signer_matches(address, signature, v4_layout(text))
    ):
        raise SignatureError("Invalid signature: the signer is not consumerAddress.")
    store.consume(address, text)
    return text
