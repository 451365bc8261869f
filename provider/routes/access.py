"""Access services (docs/protocol.md §12): ``GET /api/services/initialize`` and
``GET /api/services/download``.

- ``initialize`` (unsigned) ``?documentId&serviceId&consumerAddress[&fileIndex][&transferTxId]``
  answers ``{"datatoken", "nonce", "computeAddress", "providerFee"}`` as the reference provider
  does: a provider fee of amount 0 in the chain's Ocean token, ``providerData.environment``
  null, ``validUntil`` = now + the service ``timeout`` (0: no expiry). With a ``fileIndex`` the
  file must answer first; with a ``transferTxId`` that is still a valid order the answer is
  ``{"datatoken", "nonce", "validOrder": tx}`` (nothing more to pay). A compute service is
  refused: it has ``initializeCompute``.
- ``download`` (signed over ``documentId + nonce``)
  ``?documentId&serviceId&consumerAddress&transferTxId&fileIndex&nonce&signature[&userdata]``
  checks the order with :class:`provider.orders.OrderValidator` (datatoken logs only, provider
  fee issued and signed by this provider and not expired, ``OrderStarted`` for this service's
  index, younger than the service timeout, requester = consumer or payer) and streams file
  ``fileIndex`` through :mod:`operator_engine.storage` with ``Content-Disposition:
  attachment;filename=<name>``. A single ``Range`` is forwarded to GET-based file servers
  (url, ipfs, arweave) and their 206 relayed; when a server ignores it, the provider cuts the
  range from the stream itself (206 + ``Content-Range``, 416 when unsatisfiable) if the length
  is known, else sends the whole file (200).
  Access orders are *not* consumed: one order serves repeated downloads until the service
  timeout passes (Ocean's rule for access; compute orders start one job each).

Both act on the request's chain: ``chainId`` when given, else the chain of ``documentId``
(its key, contracts, Ocean token and indexer; see ``docs/multichain.md``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import ExitStack
from functools import partial
from typing import Any

from flask import Blueprint, Response, jsonify, request
from flask.typing import ResponseReturnValue
from web3 import Web3
from werkzeug.exceptions import HTTPException, RequestedRangeNotSatisfiable
from werkzeug.http import parse_content_range_header

from contracts_abi import fees as fee_format
from operator_engine.fetch import FetchError
from operator_engine.models import ZERO_ADDRESS
from operator_engine.storage import OpenedFile, file_info, open_file
from provider.app import Services, services
from provider.asset import STATE_ACTIVE, STATE_UNLISTED, Asset
from provider.asset_checks import check_credentials, decrypt_files, parse_json_field
from provider.chains import Chain
from provider.errors import ProviderError, RequestValidationError, ResourceError
from provider.orders import Order, OrderError, OrderValidator
from provider.params import (
    address_param,
    is_digits,
    lookup,
    request_params,
    require,
    text_param,
)
from provider.request_auth import download_text, verify_request
from provider.routes.results import safe_filename
from tidewater.engine_config import storage_config

log = logging.getLogger(__name__)
bp = Blueprint("access", __name__)
COMPUTE_SERVICE = "Use the initializeCompute endpoint to initialize compute jobs."
FILE_UNAVAILABLE = "Asset URL not found or not available."
PROBE_TIMEOUT_S = 10.0


def _index(params: dict[str, Any], name: str) -> int | None:
    text = text_param(params, name)
    if text is None:
        return None
    if not is_digits(text):
        raise RequestValidationError({name: [f"The {name} field must be a non-negative integer."]})
    return int(text)


def _access_service(
    chain: Chain | None, did: str, service_id: str, consumer: str
) -> tuple[Asset, int, dict[str, Any]]:
    """The asset and its ``access`` service, consumable by ``consumer``; 4xx otherwise."""
    resolver = chain.resolver if chain is not None else None
    asset = resolver.resolve(did) if resolver is not None else None
    if asset is None:
        raise ProviderError(f"Cannot resolve DID {did}", 404)
    index, service = asset.require_service(service_id, ProviderError("Invalid serviceId.", 400))
    if service.get("type") == "compute":
        raise ProviderError(COMPUTE_SERVICE, 400)
    if service.get("type") != "access":
        raise ProviderError(f"Service {service_id} is not an access service.", 400)
    if asset.state not in (STATE_ACTIVE, STATE_UNLISTED):
        raise ProviderError(f"Asset {did} is not consumable (metadata state {asset.state}).")
    check_credentials(asset.ddo, consumer, "dataset")
    return asset, index, service


def _files(chain: Chain, asset: Asset, service: dict[str, Any]) -> list[dict[str, Any]]:
    try:
        payload = decrypt_files(chain.private_key, service.get("files"))
    except Exception:  # undecryptable files are the asset's fault, not the client's
        raise ProviderError("the service's files cannot be decrypted by this provider") from None
    same = (
        str(payload.get("datatokenAddress", "")).lower()
        == str(service.get("datatokenAddress", "")).lower()
        and str(payload.get("nftAddress", "")).lower() == asset.nft_address.lower()
    )
    if not same:
        raise ProviderError("the service's files belong to another asset")
    return [f for f in payload["files"] if isinstance(f, dict)]


def _file_at(files: list[dict[str, Any]], index: int | None) -> dict[str, Any]:
    if index is None or index >= len(files):
        raise ProviderError(f"No such fileIndex {index}", 400)
    return files[index]


def _validate_order(
    chain: Chain, asset: Asset, index: int, service: dict[str, Any], tx: str, consumer: str
) -> Order:
    return OrderValidator(chain.web3, chain.provider_address).validate(
        tx_id=tx,
        requester=consumer,
        nft_address=asset.nft_address,
        datatoken=str(service.get("datatokenAddress")),
        service_id=str(service.get("id")),
        service_index=index,
        service_timeout=int(service.get("timeout") or 0),
        expiry_optional=True,
    )


def _compute_address(svc: Services, chain: Chain) -> str:
    """The primary environment's consumerAddress (the first offered one without a primary)."""
    primary = svc.engine.primary_environment()
    envs = ([primary] if primary is not None else []) + list(svc.engine.environments())
    address = next((e.consumer_address for e in envs if e.consumer_address), None)
    return Web3.to_checksum_address(address or chain.provider_address)


def access_fee(chain: Chain, datatoken: str, service: dict[str, Any]) -> dict[str, Any]:
    """A signed zero-amount provider fee for an access service (no compute environment), in
    the chain's Ocean token."""
    now = time.time()
    timeout = int(service.get("timeout") or 0)
    token = (chain.addresses or {}).get("Ocean") or ZERO_ADDRESS
    return fee_format.sign_provider_fee(
        chain.private_key,
        provider_data_hex=fee_format.provider_data(None, datatoken, str(service["id"]), now),
        fee_token=Web3.to_checksum_address(token),
        amount=0,
        valid_until=int(now) + timeout if timeout else 0,
    )


@bp.get("/api/services/initialize")
def initialize() -> ResponseReturnValue:
    svc = services()
    params = request_params()
    did, service_id = require(params, "documentId", "serviceId")
    consumer = str(address_param(params, "consumerAddress"))
    file_index = _index(params, "fileIndex")
    chain = svc.request_chain(text_param(params, "chainId"), str(did))
    asset, index, service = _access_service(chain, str(did), str(service_id), consumer)
    assert chain is not None  # the asset resolved on it
    datatoken = Web3.to_checksum_address(str(service.get("datatokenAddress")))
    if file_index is not None:
        file_obj = _file_at(_files(chain, asset, service), file_index)
        config = storage_config(svc.settings, timeout=PROBE_TIMEOUT_S)
        userdata = parse_json_field(params.get("userdata"), "userdata")
        if not file_info(file_obj, config, userdata=userdata)["valid"]:
            raise ProviderError(FILE_UNAVAILABLE, 400)
    answer: dict[str, Any] = {"datatoken": datatoken, "nonce": svc.nonces.get(consumer)}
    tx = text_param(params, "transferTxId")
    if tx is not None:
        try:
            order = _validate_order(chain, asset, index, service, tx, consumer)
            return jsonify({**answer, "validOrder": order.tx_id})
        except OrderError as exc:
            log.info("initialize: order %s not reusable: %s", tx, exc)
    answer["computeAddress"] = _compute_address(svc, chain)
    answer["providerFee"] = access_fee(chain, datatoken, service)
    return jsonify(answer)


def _single_range() -> str | None:
    """The request's ``Range`` when it is one byte range (forwarded to the file server)."""
    parsed = request.range
    if parsed is None or parsed.units != "bytes" or len(parsed.ranges) != 1:
        return None
    return parsed.to_header()


def _chunks(stack: ExitStack, opened: OpenedFile) -> Iterator[bytes]:
    try:
        yield from opened.chunks
    except FetchError as exc:  # headers are sent: the client sees a short body
        log.warning("download interrupted: %s", exc)
    finally:
        stack.close()


@bp.get("/api/services/download")
def download() -> ResponseReturnValue:
    svc = services()
    params = request_params()
    did, service_id, tx = require(params, "documentId", "serviceId", "transferTxId", "fileIndex")[
        :3
    ]
    consumer = str(address_param(params, "consumerAddress"))
    file_index = _index(params, "fileIndex")
    userdata = parse_json_field(params.get("userdata"), "userdata")
    verify_request(
        consumer,
        lookup(params, "signature"),
        lookup(params, "nonce"),
        partial(download_text, str(did)),
        store=svc.nonces,
    )
    chain = svc.request_chain(text_param(params, "chainId"), str(did))
    asset, index, service = _access_service(chain, str(did), str(service_id), consumer)
    assert chain is not None  # the asset resolved on it
    file_obj = _file_at(_files(chain, asset, service), file_index)
    try:
        _validate_order(chain, asset, index, service, str(tx), consumer)
    except OrderError as exc:
        log.info("download: order %s refused: %s", tx, exc)
        raise ResourceError("order", "order_invalid") from None
    config = storage_config(svc.settings)
    stack = ExitStack()
    try:
        opened = stack.enter_context(
            open_file(file_obj, config, userdata=userdata, byte_range=_single_range())
        )
    except FetchError as exc:
        stack.close()
        log.info("download of %s file %s failed: %s", did, file_index, exc)
        raise ProviderError(f"Error: {exc.public}", 400) from None
    if opened.status == 416:  # the file server judged the forwarded Range itself
        stack.close()
        parsed = parse_content_range_header(opened.content_range)
        raise RequestedRangeNotSatisfiable(length=parsed.length if parsed else None)
    response = Response(
        _chunks(stack, opened),
        status=opened.status,
        mimetype=opened.content_type or "application/octet-stream",
    )
    name = safe_filename(opened.filename or f"file{file_index}")
    response.headers["Content-Disposition"] = f"attachment;filename={name}"
    if opened.content_length is not None:
        response.headers["Content-Length"] = str(opened.content_length)
    if opened.status == 206:  # the file server sent the part: relay it as is
        response.headers["Content-Range"] = str(opened.content_range)
        response.headers["Accept-Ranges"] = "bytes"
        return response
    try:
        return response.make_conditional(
            request,
            accept_ranges=opened.content_length is not None,
            complete_length=opened.content_length,
        )
    except HTTPException:  # 416: the upstream connection is not needed any more
        stack.close()
        raise
