"""Every validation message provider-core produces, each triggered for real (docs/protocol.md §1).

Each row: a request a client could send, the expected status, and the exact ``errors`` body
(validation layer) or ``error`` body (business rules). Nothing is changed by any of them.
"""

from __future__ import annotations

from typing import Any

import pytest
from eth_account import Account
from flask.testing import FlaskClient

from provider.request_auth import decrypt_text, result_text
from provider.signatures import sign_text
from tests.provider.core_support import (  # noqa: F401 (fixtures)
    CHAIN_ID,
    CONSUMER_KEY,
    OTHER_KEY,
    app_fixture,
    client_fixture,
    engine_fixture,
    settings_fixture,
    stored_nonce,
)

ME = Account.from_key(CONSUMER_KEY).address
NFT = "0x" + "cd" * 20
REQUIRED = "The {} field is required."
NONCE_FORMAT = "The nonce field must be a finite decimal number of at most 1024 characters."


def _sig(key: str, text: str, v: int | None = None) -> str:
    signature = sign_text(key, text)
    return signature if v is None else signature[:-2] + f"{v:02x}"


def _result(**over: Any) -> dict[str, Any]:
    query: dict[str, Any] = {"consumerAddress": ME, "jobId": "j1", "index": "0", "nonce": "2"}
    query["signature"] = _sig(CONSUMER_KEY, result_text(ME, "j1", 0, "2"))
    query.update(over)
    return {k: v for k, v in query.items() if v is not None}


def _decrypt(**over: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "decrypterAddress": ME,
        "chainId": CHAIN_ID,
        "dataNftAddress": NFT,
        "encryptedDocument": "0x00",
        "flags": 2,
        "documentHash": "0x00",
        "nonce": "2",
        "signature": _sig(CONSUMER_KEY, decrypt_text(NFT, ME, CHAIN_ID, "2")),
    }
    body.update(over)
    return {k: v for k, v in body.items() if v is not None}


GET_RESULT = ("GET", "/api/services/computeResult")
POST_DECRYPT = ("POST", "/api/services/decrypt")
ROWS: list[tuple[str, tuple[str, str], dict[str, Any], int, dict[str, Any]]] = [
    # (id, (method, path), request kwargs, status, expected body subset)
    (
        "nonce-required",
        ("GET", "/api/services/nonce"),
        {},
        400,
        {"errors": {"userAddress": [REQUIRED.format("userAddress")]}},
    ),
    (
        "nonce-bad-address",
        ("GET", "/api/services/nonce"),
        {"query_string": {"userAddress": "0x123"}},
        400,
        {"errors": {"userAddress": ["The userAddress field must be a valid address."]}},
    ),
    (
        "status-required",
        ("GET", "/api/services/compute"),
        {},
        400,
        {"errors": {"consumerAddress": [REQUIRED.format("consumerAddress")]}},
    ),
    (
        "status-not-a-string",
        ("GET", "/api/services/compute"),
        {"json": {"consumerAddress": ME, "jobId": {"$ne": 1}}},
        400,
        {"errors": {"jobId": ["The jobId field must be a string."]}},
    ),
    (
        "stop-required",
        ("PUT", "/api/services/compute"),
        {"json": {}},
        400,
        {
            "errors": {
                "consumerAddress": [REQUIRED.format("consumerAddress")],
                "jobId": [REQUIRED.format("jobId")],
            }
        },
    ),
    (
        "stop-no-signature",
        ("PUT", "/api/services/compute"),
        {"json": {"consumerAddress": ME, "jobId": "j"}},
        400,
        {"errors": {"signature": [REQUIRED.format("signature")]}},
    ),
    (
        "put-body-not-json",
        ("PUT", "/api/services/compute"),
        {"data": "{oops", "content_type": "application/json"},
        400,
        {"errors": {"body": ["The request body is not valid JSON."]}},
    ),
    (
        "put-body-nan",
        ("PUT", "/api/services/compute"),
        {"data": '{"nonce": NaN}', "content_type": "application/json"},
        400,
        {"errors": {"body": ["The request body is not valid JSON."]}},
    ),
    (
        "delete-body-array",
        ("DELETE", "/api/services/compute"),
        {"data": "[1, 2]", "content_type": "application/json"},
        400,
        {"errors": {"body": ["The request body must be a JSON object."]}},
    ),
    (
        "delete-nonce-bool",
        ("DELETE", "/api/services/compute"),
        {"json": {"consumerAddress": ME, "jobId": "j", "signature": "0x00", "nonce": True}},
        400,
        {"errors": {"nonce": ["The nonce field must be a number."]}},
    ),
    (
        "result-required",
        GET_RESULT,
        {},
        400,
        {
            "errors": {
                "consumerAddress": [REQUIRED.format("consumerAddress")],
                "jobId": [REQUIRED.format("jobId")],
                "index": [REQUIRED.format("index")],
            }
        },
    ),
    (
        "result-index-negative",
        GET_RESULT,
        {"query_string": _result(index="-1")},
        400,
        {"errors": {"index": ["The index field must be a non-negative integer."]}},
    ),
    (
        "result-index-text",
        GET_RESULT,
        {"query_string": _result(index="first")},
        400,
        {"errors": {"index": ["The index field must be a non-negative integer."]}},
    ),
    (
        "result-no-signature",
        GET_RESULT,
        {"query_string": _result(signature=None)},
        400,
        {"errors": {"signature": [REQUIRED.format("signature")]}},
    ),
    (
        "result-no-nonce",
        GET_RESULT,
        {"query_string": _result(nonce=None)},
        400,
        {"errors": {"nonce": [REQUIRED.format("nonce")]}},
    ),
    (
        "result-nonce-nan",
        GET_RESULT,
        {"query_string": _result(nonce="NaN")},
        400,
        {"errors": {"nonce": [NONCE_FORMAT]}},
    ),
    (
        "result-nonce-inf",
        GET_RESULT,
        {"query_string": _result(nonce="inf")},
        400,
        {"errors": {"nonce": [NONCE_FORMAT]}},
    ),
    (
        "result-nonce-garbage",
        GET_RESULT,
        {"query_string": _result(nonce="12abc")},
        400,
        {"errors": {"nonce": [NONCE_FORMAT]}},
    ),
    (
        "result-nonce-exponent",
        GET_RESULT,
        {"query_string": _result(nonce="1e5000")},
        400,
        {"errors": {"nonce": ["The nonce field's exponent must be within ±1024."]}},
    ),
    (
        "result-signature-short",
        GET_RESULT,
        {"query_string": _result(signature="0x1234")},
        400,
        {"errors": {"signature": ["Invalid signature: expected 0x followed by 65 bytes of hex."]}},
    ),
    (
        "result-signature-v",
        GET_RESULT,
        {"query_string": _result(signature=_sig(CONSUMER_KEY, result_text(ME, "j1", 0, "2"), v=5))},
        400,
        {"errors": {"signature": ["Invalid signature: v must be 0, 1, 27 or 28."]}},
    ),
    (
        "result-signature-zero",
        GET_RESULT,
        {"query_string": _result(signature="0x" + "00" * 65)},
        400,
        {"errors": {"signature": ["Invalid signature: cannot recover a signer."]}},
    ),
    (
        "result-other-key",
        GET_RESULT,
        {"query_string": _result(signature=_sig(OTHER_KEY, result_text(ME, "j1", 0, "2")))},
        400,
        {"errors": {"signature": ["Invalid signature: the signer is not consumerAddress."]}},
    ),
    (
        "result-nonce-not-above-stored",
        GET_RESULT,
        {
            "query_string": _result(
                nonce="1", signature=_sig(CONSUMER_KEY, result_text(ME, "j1", 0, "1"))
            )
        },
        400,
        {"errors": {"signature": ["Invalid signature expected nonce (1) > current nonce (1)."]}},
    ),
    (
        "result-nonce-negative",
        GET_RESULT,
        {
            "query_string": _result(
                nonce="-7", signature=_sig(CONSUMER_KEY, result_text(ME, "j1", 0, "-7"))
            )
        },
        400,
        {"errors": {"signature": ["Invalid signature expected nonce (-7) > current nonce (1)."]}},
    ),
    (
        "decrypt-empty-body",
        POST_DECRYPT,
        {},
        400,
        {"errors": {"body": ["The request body must be a JSON object."]}},
    ),
    (
        "decrypt-required",
        POST_DECRYPT,
        {"json": {}},
        400,
        {
            "errors": {
                "decrypterAddress": [REQUIRED.format("decrypterAddress")],
                "chainId": [REQUIRED.format("chainId")],
                "dataNftAddress": [REQUIRED.format("dataNftAddress")],
            }
        },
    ),
    (
        "decrypt-chain-text",
        POST_DECRYPT,
        {"json": _decrypt(chainId="main")},
        400,
        {"errors": {"chainId": ["The chainId field must be an integer."]}},
    ),
    (
        "decrypt-bad-nft",
        POST_DECRYPT,
        {"json": _decrypt(dataNftAddress="0xnope")},
        400,
        {"errors": {"dataNftAddress": ["The dataNftAddress field must be a valid address."]}},
    ),
    (
        "decrypt-body-fields",
        POST_DECRYPT,
        {"json": _decrypt(encryptedDocument=None, flags=None, documentHash=None)},
        400,
        {
            "errors": {
                "encryptedDocument": [REQUIRED.format("encryptedDocument")],
                "flags": [REQUIRED.format("flags")],
                "documentHash": [REQUIRED.format("documentHash")],
            }
        },
    ),
    (
        "decrypt-flags",
        POST_DECRYPT,
        {"json": _decrypt(flags=300)},
        400,
        {"errors": {"flags": ["The flags field must be an integer 0-255."]}},
    ),
    (
        "decrypt-hex",
        POST_DECRYPT,
        {"json": _decrypt(encryptedDocument="0xzz")},
        400,
        {"errors": {"encryptedDocument": ["The encryptedDocument field must be 0x hex."]}},
    ),
    (
        "decrypt-signer",
        POST_DECRYPT,
        {"json": _decrypt(signature=_sig(OTHER_KEY, decrypt_text(NFT, ME, CHAIN_ID, "2")))},
        400,
        {"errors": {"signature": ["Invalid signature: the signer is not decrypterAddress."]}},
    ),
    (
        "decrypt-other-chain",
        POST_DECRYPT,
        {"json": _decrypt(chainId=1)},
        400,
        {"error": "Unsupported chain ID 1: this provider serves 8996"},
    ),
    (
        "encrypt-no-chain",
        ("POST", "/api/services/encrypt"),
        {"data": b"x"},
        400,
        {"errors": {"chainId": [REQUIRED.format("chainId")]}},
    ),
    (
        "encrypt-empty",
        ("POST", f"/api/services/encrypt?chainId={CHAIN_ID}"),
        {"data": b""},
        400,
        {"errors": {"body": ["The request body must not be empty."]}},
    ),
    (
        "encrypt-other-chain",
        ("POST", "/api/services/encrypt?chainId=137"),
        {"data": b"x"},
        400,
        {"error": "Unsupported chain ID 137: this provider serves 8996"},
    ),
    (
        "envs-other-chain",
        ("GET", "/api/services/computeEnvironments?chainId=5"),
        {},
        400,
        {"error": "Unsupported chain ID 5: this provider serves 8996"},
    ),
    (
        "fileinfo-service-required",
        ("POST", "/api/services/fileinfo"),
        {"json": {"did": "did:op:1"}},
        400,
        {"errors": {"serviceId": [REQUIRED.format("serviceId")]}},
    ),
    (
        "fileinfo-file-index",
        ("POST", "/api/services/fileinfo"),
        {"json": {"did": "did:op:1", "serviceId": "s", "fileIndex": -1}},
        400,
        {"errors": {"fileIndex": ["The fileIndex field must be a non-negative integer."]}},
    ),
    (
        "fileinfo-type-required",
        ("POST", "/api/services/fileinfo"),
        {"json": {}},
        400,
        {"errors": {"type": [REQUIRED.format("type")]}},
    ),
    (
        "fileinfo-url-required",
        ("POST", "/api/services/fileinfo"),
        {"json": {"type": "url"}},
        400,
        {"errors": {"url": [REQUIRED.format("url")]}},
    ),
    (
        "container-missing",
        ("POST", "/api/services/validateContainer"),
        {"json": {"image": "python"}},
        400,
        {"error": {"algorithm.container": "missing_entrypoint_image_checksum"}},
    ),
    (
        "container-checksum",
        ("POST", "/api/services/validateContainer"),
        {"json": {"entrypoint": "e", "image": "i", "tag": "t", "checksum": "md5:1"}},
        400,
        {"error": {"algorithm.container": "checksum_prefix"}},
    ),
]


@pytest.mark.parametrize(
    ("route", "kwargs", "status", "expected"),
    [pytest.param(r[1], r[2], r[3], r[4], id=r[0]) for r in ROWS],
)
def test_validation_row(
    client: FlaskClient,
    route: tuple[str, str],
    kwargs: dict[str, Any],
    status: int,
    expected: dict[str, Any],
) -> None:
    method, path = route
    reply = client.open(path, method=method, **kwargs)
    assert reply.status_code == status, reply.get_data(as_text=True)
    body = reply.json
    for key, value in expected.items():
        assert body[key] == value
    if "errors" in expected:
        assert body["message"] == "Validation error" and body["success"] is False
    assert stored_nonce(client, ME) == "1"  # nothing moved
