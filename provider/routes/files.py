"""File and container checks.

- ``POST /api/services/fileinfo`` (unsigned): ``{"did", "serviceId", "fileIndex"?,
  "checksum"?, "userdata"?}`` checks the files of a published service (decrypted here, never
  returned), or a bare file object of any storage type (``url``, ``ipfs``, ``arweave``,
  ``graphql``, ``smartcontract``) checks that file; ``userdata`` feeds graphql variables and
  smartcontract inputs. Answers ``[{"index", "valid", "contentLength",
  "contentType", "type", "filename"?, "checksum"?, "checksumType"?}]``; the sha256 ``checksum``
  only when the body asks ``"checksum": true`` (the body is then read, up to a cap). Files are
  opened by ``operator_engine.storage`` behind the SSRF guard (public addresses only unless
  ``ALLOW_NON_PUBLIC_IP``, gateways included).
- ``POST /api/services/validateContainer``: a container section ``{entrypoint, image, tag,
  checksum}`` → 200 echo, or 400 ``{"error": {"algorithm.container": code}}``
  (docs/protocol.md §6); a part that is not a string → 400 validation error naming it.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, jsonify
from flask.typing import ResponseReturnValue

from operator_engine.storage import TYPES, file_info
from provider import json_limits
from provider.app import services
from provider.asset_checks import check_container, parse_json_field
from provider.chains import Chain
from provider.crypto import DecryptionError, decrypt_hex
from provider.errors import ProviderError, RequestValidationError, ResourceError
from provider.params import is_digits, is_missing, request_params, text_param
from tidewater.engine_config import storage_config

bp = Blueprint("files", __name__)
PROBE_TIMEOUT_S = 10.0
_REQUIRED = {
    "url": ("url",),
    "ipfs": ("hash",),
    "arweave": ("transactionId",),
    "graphql": ("url", "query"),
    "smartcontract": ("address", "abi", "chainId"),
}


def probe(
    file_obj: Any, settings: Any, *, checksum: bool = False, userdata: dict[str, Any] | None = None
) -> dict[str, Any]:
    """``fileinfo``'s answer for one file object (see :func:`operator_engine.storage.file_info`)."""
    config = storage_config(settings, timeout=PROBE_TIMEOUT_S)
    return file_info(file_obj, config, checksum=checksum, userdata=userdata)


def _service_files(chain: Chain | None, did: str, service_id: str) -> list[Any]:
    if chain is None:
        raise ResourceError("dataset", "did_not_found", 404)
    if chain.resolver is None:
        raise ProviderError(f"asset resolution is not available on chain {chain.chain_id}", 503)
    asset = chain.resolver.resolve(did)
    if asset is None:
        raise ResourceError("dataset", "did_not_found", 404)
    _index, service = asset.require_service(
        service_id, ResourceError("dataset.serviceId", "not_found", 404)
    )
    encrypted = service.get("files")
    try:
        plain = json_limits.loads(decrypt_hex(chain.private_key, str(encrypted)))
    except (DecryptionError, ValueError):
        raise ProviderError("the service's files cannot be decrypted by this provider") from None
    files = plain.get("files") if isinstance(plain, dict) else None
    return files if isinstance(files, list) else []


@bp.post("/api/services/fileinfo")
def fileinfo() -> ResponseReturnValue:
    svc = services()
    params = request_params()
    checksum = params.get("checksum") in (True, "true", "True", "1", 1)
    userdata = parse_json_field(params.get("userdata"), "userdata")
    did = text_param(params, "did")
    if did is not None:
        service_id = text_param(params, "serviceId")
        if service_id is None:
            raise RequestValidationError({"serviceId": ["The serviceId field is required."]})
        index_text = text_param(params, "fileIndex")
        if index_text is not None and not is_digits(index_text):
            raise RequestValidationError(
                {"fileIndex": ["The fileIndex field must be a non-negative integer."]}
            )
        chain = svc.request_chain(text_param(params, "chainId"), did)
        files = _service_files(chain, did, service_id)
        indexes = list(range(len(files)))
        if index_text is not None:
            if int(index_text) >= len(files):
                raise ProviderError("fileIndex is out of range", 400)
            indexes = [int(index_text)]
        return jsonify(
            [
                {"index": i, **probe(files[i], svc.settings, checksum=checksum, userdata=userdata)}
                for i in indexes
            ]
        )
    kind = params.get("type")
    if is_missing(kind):
        raise RequestValidationError({"type": ["The type field is required."]})
    if kind not in _REQUIRED:
        raise RequestValidationError(
            {"type": [f"The type field must be one of: {', '.join(TYPES)}."]}
        )
    for name in _REQUIRED[str(kind)]:
        if is_missing(params.get(name)):
            raise RequestValidationError({name: [f"The {name} field is required."]})
    file_obj = {k: v for k, v in params.items() if k not in ("checksum", "userdata")}
    info = probe(file_obj, svc.settings, checksum=checksum, userdata=userdata)
    return jsonify([{"index": 0, **info}])


@bp.post("/api/services/validateContainer")
def validate_container() -> ResponseReturnValue:
    return jsonify(check_container(request_params(), prefix=""))
