"""C2D v2 compute: ``initializeCompute``, paid ``compute`` start and ``freeCompute``.

Paid jobs: the V4 checks (DDO, trust, orders naming this environment's ``consumerAddress`` as
consumer or the requester as payer, service timeout), then the escrow: the job's cost is locked
from the consumer's escrow funds (``provider.node.payments``) and the job is queued only once
the lock is mined. Orders here are access rights: one order may admit several jobs within its
service timeout (the compute itself is paid by the lock), so the v2 path consumes no order.

Free jobs: only in an environment with a free tier, in that tier's own engine environment
(``<id>:free``: its own resources, duration and concurrency), no payment. Published assets
still need an order each unless the tier sets ``requireOrders: false``.
"""

from __future__ import annotations

import time
from typing import Any

from flask import jsonify
from flask.typing import ResponseReturnValue
from web3 import Web3

from operator_engine.api import EngineError, EnvironmentUnavailable
from operator_engine.environments import FREE_SUFFIX
from operator_engine.models import ComputeEnvironment, Job, JobRequest
from operator_engine.settlement import new_job_id
from provider.app import Services, services
from provider.compute_validation import ComputeValidator, environment_of, validate_inputs
from provider.errors import ProviderError, RequestValidationError, ResourceError
from provider.fees import token_decimals
from provider.node import bp, payments
from provider.node.auth import authenticate
from provider.node.discovery import API
from provider.node.environments import (
    is_paid,
    job_duration,
    lock_seconds,
    quote,
    rate_per_minute,
    requested_resources,
)
from provider.node.jobs import job_view
from provider.node.records import NodeJob, node_jobs_of_app
from provider.orders import OrderValidator
from provider.params import (
    address_param,
    request_params,
    require,
    require_chain_id,
    text_param,
)
from provider.routes.initialize import _item as order_item


def _environment(svc: Services, params: dict[str, Any]) -> ComputeEnvironment:
    require(params, "environment")
    env = environment_of(svc.engine, str(text_param(params, "environment")))
    if env.free_of is not None:  # engine-side free tiers are not addressable
        raise ProviderError("Compute environment does not exist", 400)
    return env


def _dataset_items(params: dict[str, Any]) -> list[tuple[str, Any, bool]]:
    datasets = params.get("datasets")
    if datasets is None and isinstance(params.get("dataset"), dict):
        datasets = [params["dataset"]]
    if not isinstance(datasets, list) or not datasets:
        raise RequestValidationError({"datasets": ["The datasets field must be a list."]})
    return [(f"datasets[{i}]", item, i == 0) for i, item in enumerate(datasets)]


def _payment(svc: Services, params: dict[str, Any], env: ComputeEnvironment) -> dict[str, Any]:
    payment = params.get("payment") or {}
    if not isinstance(payment, dict):
        raise RequestValidationError({"payment": ["The payment field must be an object."]})
    if payment.get("chainId") is not None:
        require_chain_id(payment["chainId"], svc.chain_id, "payment.chainId")
    token = payment.get("token")
    if is_paid(env) and token and str(token).lower() != env.fee_token.lower():
        raise ProviderError(f"Environment {env.id} is paid in {env.fee_token}, not {token}", 400)
    return payment


def payee_of(svc: Services, env: ComputeEnvironment) -> str:
    """The address that orders name as consumer and escrow pays: the env's consumerAddress,
    which for a paid environment must be the provider's wallet (it signs locks and claims)."""
    payee = Web3.to_checksum_address(env.consumer_address or svc.provider_address)
    if is_paid(env) and payee.lower() != svc.provider_address.lower():
        raise ProviderError(
            f"Environment {env.id} cannot take escrow payments: its consumerAddress is not "
            "this provider's wallet",
            503,
        )
    return payee


@bp.post(f"{API}/initializeCompute")
def initialize_compute() -> ResponseReturnValue:
    params = request_params()
    require(params, "algorithm")
    consumer = address_param(params, "consumerAddress")
    svc = services()
    env = _environment(svc, params)
    items = _dataset_items(params)
    algorithm = params.get("algorithm")
    if not isinstance(algorithm, dict):
        raise RequestValidationError({"algorithm": ["The algorithm field must be an object."]})
    payment = _payment(svc, params, env)
    duration = job_duration(payment.get("maxJobDuration", params.get("maxJobDuration")), env)
    amounts = requested_resources(
        env, payment.get("resources", params.get("resources")), "resources"
    )
    valid_until = int(time.time()) + lock_seconds(duration)
    orders = OrderValidator(svc.web3, svc.provider_address)
    common: dict[str, Any] = {
        "env": env,
        "valid_until": valid_until,
        "consumer": str(consumer),
        "charge": False,  # the compute is paid through the escrow, never by provider fees
    }
    body: dict[str, Any] = {
        "datasets": [
            order_item(svc.default_chain, orders, item, resource, algorithm=False, **common)
            for resource, item, _main in items
        ]
    }
    if algorithm.get("documentId"):
        body["algorithm"] = order_item(
            svc.default_chain, orders, algorithm, "algorithm", algorithm=True, **common
        )
    elif not isinstance(algorithm.get("meta"), dict):
        raise ResourceError("algorithm", "missing_meta_documentId")
    cost = quote(env, amounts, duration, token_decimals(svc.web3, env.fee_token))
    body["payment"] = {
        # None before Escrow is deployed: free jobs still order with these terms, and a paid
        # start then answers 503 escrow_not_deployed
        "escrowAddress": payments.escrow_address(svc),
        "chainId": svc.chain_id,
        "payee": payee_of(svc, env),
        "token": env.fee_token,
        "amount": str(cost),
        "minLockSeconds": lock_seconds(duration),
    }
    return jsonify(body)


def _validated(
    svc: Services, params: dict[str, Any], consumer: str, env: ComputeEnvironment, orders: bool
) -> tuple[Any, Any, str | None]:
    validator = ComputeValidator(  # the /node API serves the first chain (docs/multichain.md)
        svc,
        svc.default_chain,
        params,
        Web3.to_checksum_address(consumer),
        env,
        orders_required=orders,
    )
    datasets, found, algorithm = validate_inputs(validator, _dataset_items(params))
    agreement = found[0].tx_id.lower() if found and found[0] is not None else None
    return datasets, algorithm, agreement


def _submit(svc: Services, request: JobRequest, record: NodeJob) -> Job:
    node_jobs_of_app().add(record)
    try:
        job: Job = svc.engine.submit(request)
    except EnvironmentUnavailable as exc:
        raise ProviderError(str(exc), 503) from None
    except EngineError as exc:
        raise ProviderError(str(exc), 400) from None
    return job


@bp.post(f"{API}/compute")
def compute_start() -> ResponseReturnValue:
    params = request_params()
    svc = services()
    consumer = authenticate(svc, params, "startCompute")
    env = _environment(svc, params)
    payment = _payment(svc, params, env)
    duration = job_duration(payment.get("maxJobDuration", params.get("maxJobDuration")), env)
    amounts = requested_resources(
        env, payment.get("resources", params.get("resources")), "resources"
    )
    datasets, algorithm, agreement = _validated(svc, params, consumer, env, orders=True)
    payee_of(svc, env)
    job_id = new_job_id()
    decimals = token_decimals(svc.web3, env.fee_token)
    cost = quote(env, amounts, duration, decimals)
    if cost > 0:
        # Blocks until the lock is mined: the job is queued only once it is paid for.
        payments.lock(
            svc,
            job_id=job_id,
            payer=Web3.to_checksum_address(consumer),
            token=env.fee_token,
            amount=cost,
            expiry=lock_seconds(duration),
            rate=rate_per_minute(env, amounts, decimals),
            min_duration=env.min_job_duration,
            max_duration=duration,
        )
    request = JobRequest(
        owner=Web3.to_checksum_address(consumer),
        environment=env.id,
        datasets=datasets,
        algorithm=algorithm,
        expire_timestamp=int(time.time()) + duration,
        job_id=job_id,
        max_duration=duration,
    )
    record = NodeJob(job_id, "paid", env.id, agreement, amounts, duration)
    try:
        job = _submit(svc, request, record)
    except Exception:
        if cost > 0:
            payments.release(svc, job_id, "the job could not be queued")
        raise
    return jsonify([job_view(svc, job, record)])


@bp.post(f"{API}/freeCompute")
def free_compute_start() -> ResponseReturnValue:
    params = request_params()
    svc = services()
    consumer = authenticate(svc, params, "freeStartCompute")
    env = _environment(svc, params)
    free_env = svc.engine.environment(env.id + FREE_SUFFIX)
    if env.free is None or free_env is None:
        raise ProviderError(f"Compute environment {env.id} has no free tier", 400)
    if int(svc.engine.current_jobs().get(free_env.id, 0)) >= free_env.max_jobs:
        raise ProviderError(
            f"The free tier of {env.id} runs at most {free_env.max_jobs} job(s) at a time; "
            "retry when one has finished",
            429,
        )
    amounts = requested_resources(free_env, params.get("resources"), "resources")
    # orders name the public environment (initializeCompute quotes for it)
    datasets, algorithm, agreement = _validated(
        svc, params, consumer, env, orders=env.free.require_orders
    )
    request = JobRequest(
        owner=Web3.to_checksum_address(consumer),
        environment=free_env.id,
        datasets=datasets,
        algorithm=algorithm,
        expire_timestamp=int(time.time()) + free_env.max_job_duration,
        job_id=new_job_id(),
    )
    assert request.job_id is not None
    record = NodeJob(request.job_id, "free", env.id, agreement, amounts, free_env.max_job_duration)
    return jsonify([job_view(svc, _submit(svc, request, record), record)])
