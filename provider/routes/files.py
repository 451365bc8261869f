"""File and container checks, and the access-service endpoints tidewater does not offer.

- ``POST /api/services/fileinfo`` (unsigned): ``{"did", "serviceId", "fileIndex"?}`` checks the
  files of a published service (decrypted here, never returned), or a bare ``url`` file object
  checks that file. Answers ``[{"index", "valid", "contentLength", "contentType", "type"}]``.
  Fetching goes through ``operator_engine.fetch``'s SSRF guard (public addresses only unless
  ``ALLOW_NON_PUBLIC_IP``); only the response headers are read.
- ``POST /api/services/validateContainer``: a container section ``{entrypoint, image, tag,
  checksum}`` → 200 echo, or 400 ``{"error": {"algorithm.container": code}}`` (PROTOCOL §6); a
  part that is not a string → 400 validation error naming it.
- ``GET /api/services/initialize`` and ``GET /api/services/download`` belong to access
  (download) services. tidewater serves compute-to-data only, so data never leaves except as
  job results: both answer 501 with a JSON error.
"""

from __future__ import annotations

import json
from typing import Any

from flask import Blueprint, jsonify
from flask.typing import ResponseReturnValue

from operator_engine import fetch
from provider.app import services
from provider.chains import Chain
from provider.compute_validation import check_container
from provider.crypto import DecryptionError, decrypt_hex
from provider.errors import ProviderError, RequestValidationError, ResourceError
from provider.params import is_digits, is_missing, request_params, text_param

bp = Blueprint("files", __name__)
PROBE_TIMEOUT_S = 10.0
_NOT_OFFERED = "tidewater serves compute-to-data only: access (download) services are not offered"


def probe(file_obj: Any, *, allow_non_public: bool) -> dict[str, Any]:
    """Whether ``file_obj`` can be fetched, with its declared length and type (no body read)."""
    kind = file_obj.get("type") if isinstance(file_obj, dict) else None
    info: dict[str, Any] = {"valid": False, "contentLength": "", "contentType": "", "type": kind}
    try:
        with fetch.open_url(
            file_obj, allow_non_public=allow_non_public, timeout=PROBE_TIMEOUT_S
        ) as resp:
            info["valid"] = True
            info["contentLength"] = resp.headers.get("Content-Length", "")
            info["contentType"] = resp.headers.get("Content-Type", "")
    except (fetch.FetchError, OSError, ValueError):
        pass
    return info


def _service_files(chain: Chain | None, did: str, service_id: str) -> list[Any]:
    if chain is None:
        raise ResourceError("dataset", "did_not_found", 404)
    if chain.resolver is None:
        raise ProviderError(f"asset resolution is not available on chain {chain.chain_id}", 503)
    asset = chain.resolver.resolve(did)
    if asset is None:
        raise ResourceError("dataset", "did_not_found", 404)
    found = asset.service(service_id)
    if found is None:
        raise ResourceError("dataset.serviceId", "not_found", 404)
    encrypted = found[1].get("files")
    try:
        plain = json.loads(decrypt_hex(chain.private_key, str(encrypted)))
    except (DecryptionError, ValueError):
        raise ProviderError("the service's files cannot be decrypted by this provider") from None
    files = plain.get("files") if isinstance(plain, dict) else None
    return files if isinstance(files, list) else []


@bp.post("/api/services/fileinfo")
def fileinfo() -> ResponseReturnValue:
    svc = services()
    params = request_params()
    allow = svc.settings.allow_non_public_ip
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
        return jsonify([{"index": i, **probe(files[i], allow_non_public=allow)} for i in indexes])
    if is_missing(params.get("type")):
        raise RequestValidationError({"type": ["The type field is required."]})
    if params.get("type") == "url" and is_missing(params.get("url")):
        raise RequestValidationError({"url": ["The url field is required."]})
    return jsonify([{"index": 0, **probe(params, allow_non_public=allow)}])


@bp.post("/api/services/validateContainer")
def validate_container() -> ResponseReturnValue:
    return jsonify(check_container(request_params(), prefix=""))


@bp.get("/api/services/initialize")
def initialize() -> ResponseReturnValue:
    raise ProviderError(_NOT_OFFERED, 501)


@bp.get("/api/services/download")
def download() -> ResponseReturnValue:
    raise ProviderError(_NOT_OFFERED, 501)
