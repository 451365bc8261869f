"""``POST /api/services/initializeCompute``: provider fees to order with (docs/protocol.md §4)."""

from __future__ import annotations

import time
from typing import Any

from flask import Blueprint, jsonify
from flask.typing import ResponseReturnValue

from contracts_abi.fees import FeeOutOfRange
from provider.app import services
from provider.chains import Chain
from provider.compute_validation import environment_of
from provider.errors import ProviderError, RequestValidationError, ResourceError
from provider.fees import provider_fee
from provider.orders import OrderError, OrderValidator
from provider.params import address_param, request_params, require, text_param, uint_param

bp = Blueprint("initialize", __name__)

INVALID_VALID_UNTIL = "The validUntil value is not correct."


def _valid_until(params: dict[str, Any]) -> int:
    """``compute.validUntil``: an exact integer below 2**256 (params.parse_uint), in the future."""
    value = uint_param(params, "compute.validUntil")
    if value is None or value <= time.time():
        raise ProviderError(INVALID_VALID_UNTIL)
    return value


def _item(
    chain: Chain,
    orders: OrderValidator,
    item: Any,
    resource: str,
    *,
    env: Any,
    valid_until: int,
    consumer: str,
    charge: bool,
    algorithm: bool,
) -> dict[str, Any]:
    if not isinstance(item, dict) or not item.get("documentId") or not item.get("serviceId"):
        raise ResourceError(resource, "missing")
    did = str(item["documentId"])
    asset = chain.resolver.resolve(did) if chain.resolver is not None else None
    if asset is None:
        raise ResourceError(resource, "did_not_found")
    if algorithm and asset.asset_type != "algorithm":
        raise ResourceError(resource, "not_algo")
    index, service = asset.require_service(
        str(item["serviceId"]), ResourceError(f"{resource}.serviceId", "not_found")
    )
    if service.get("type") not in ("access", "compute"):
        raise ResourceError(resource, "service_not_access_compute")
    datatoken = str(service.get("datatokenAddress"))
    answer: dict[str, Any] = {"datatoken": datatoken}
    if item.get("transferTxId"):
        try:
            order = orders.validate(
                tx_id=str(item["transferTxId"]),
                requester=consumer,
                nft_address=asset.nft_address,
                datatoken=datatoken,
                service_id=str(service["id"]),
                service_index=index,
                service_timeout=int(service.get("timeout") or 0),
                environment=env.id,
                check_valid_until=False,
            )
        except OrderError:
            order = None
        if order is not None:
            # a consumed order is never handed back bare: the client must reuseOrder (a new
            # payment tx), and reuseOrder names the original startOrder tx
            spent = services().engine.consumed_orders(chain.chain_id, [order.tx_id])
            if not spent and int(order.provider_fee["validUntil"]) >= valid_until:
                return {"validOrder": order.tx_id}
            answer["validOrder"] = order.start_tx_id
    try:
        answer["providerFee"] = provider_fee(
            chain.private_key,
            env=env,
            datatoken=datatoken,
            service_id=str(service["id"]),
            valid_until=valid_until,
            charge=charge,
            w3=chain.web3,
        )
    except FeeOutOfRange:
        raise ProviderError(f"{INVALID_VALID_UNTIL} The fee until then exceeds uint256.") from None
    return answer


@bp.post("/api/services/initializeCompute")
def initialize_compute() -> ResponseReturnValue:
    params = request_params()
    datasets, algorithm, _ = require(params, "datasets", "algorithm", "compute.validUntil")
    env_id = (params.get("compute") or {}).get("env")
    consumer = address_param(params, "consumerAddress")
    if not isinstance(datasets, list) or not datasets:
        raise RequestValidationError({"datasets": ["The datasets field must be a list."]})
    if not isinstance(algorithm, dict):
        raise RequestValidationError({"algorithm": ["The algorithm field must be an object."]})
    valid_until = _valid_until(params)
    svc = services()
    env = environment_of(svc.engine, None if env_id is None else str(env_id))
    first = datasets[0].get("documentId") if isinstance(datasets[0], dict) else None
    chain = svc.request_chain(text_param(params, "chainId"), first)
    if chain is None:
        raise ResourceError("datasets[0]", "did_not_found")
    env = chain.offer(env)
    orders = OrderValidator(chain.web3, chain.provider_address)
    common: dict[str, Any] = {"env": env, "valid_until": valid_until, "consumer": str(consumer)}
    body: dict[str, Any] = {
        "datasets": [
            _item(chain, orders, item, f"datasets[{i}]", charge=i == 0, algorithm=False, **common)
            for i, item in enumerate(datasets)
        ]
    }
    if algorithm.get("documentId"):
        body["algorithm"] = _item(
            chain, orders, algorithm, "algorithm", charge=False, algorithm=True, **common
        )
    elif not isinstance(algorithm.get("meta"), dict):
        raise ResourceError("algorithm", "missing_meta_documentId")
    return jsonify(body)
