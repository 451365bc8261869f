"""``POST /api/services/compute``: start a paid compute job (docs/protocol.md §6)."""

from __future__ import annotations

from functools import partial

from flask import Blueprint, jsonify
from flask.typing import ResponseReturnValue

from datastore.jobs import OrderAlreadyUsed
from operator_engine.api import EngineError, EnvironmentUnavailable
from operator_engine.models import Job, JobRequest
from provider.app import services
from provider.compute_validation import ValidatedCompute, validate_compute
from provider.engine_port import EnginePort
from provider.errors import ProviderError, ResourceError
from provider.params import address_param, request_params, require
from provider.request_auth import compute_start_text, verify_request

bp = Blueprint("compute_start", __name__)


def _same_request(job: Job, request: JobRequest) -> bool:
    algo = request.algorithm.did or "raw"
    return (
        job.owner.lower() == request.owner.lower()
        and job.environment == request.environment
        and list(job.input_dids) == [d.did for d in request.datasets]
        and job.algo_did == algo
    )


def order_already_used(validated: ValidatedCompute, tx_id: str) -> ResourceError:
    """400 ``{"error": {"<field>.transferTxId": "order_already_used"}}`` naming ``tx_id``."""
    field = validated.order_fields.get(tx_id.lower(), "order")
    return ResourceError(
        field,
        "order_already_used",
        detail=f"order {tx_id} already started a job: each order (startOrder or reuseOrder "
        "transaction) starts at most one; call initializeCompute and reuseOrder for another",
    )


def submit_once(engine: EnginePort, validated: ValidatedCompute) -> Job:
    """Submit the job, consuming its orders: every payment tx starts at most one job (the
    identical request sent again answers the job it started)."""
    request = validated.request
    try:
        job: Job = engine.submit(request, payments=validated.payments())
    except OrderAlreadyUsed as exc:
        raise order_already_used(validated, exc.tx_ids[0]) from None
    except EnvironmentUnavailable as exc:
        raise ProviderError(str(exc), 503) from None
    except EngineError as exc:
        raise ProviderError(str(exc), 400) from None
    if not _same_request(job, request):
        raise order_already_used(validated, validated.orders[0].tx_id)
    return job


@bp.post("/api/services/compute")
def compute_start() -> ResponseReturnValue:
    params = request_params()
    consumer, _signature, _nonce, document_id = require(
        params, "consumerAddress", "signature", "nonce", "dataset.documentId"
    )
    address_param(params, "consumerAddress")
    svc = services()
    verify_request(
        str(consumer),
        params.get("signature"),
        params.get("nonce"),
        partial(compute_start_text, str(consumer), str(document_id)),
        store=svc.nonces,
    )
    validated = validate_compute(svc, params, str(consumer))
    job = submit_once(svc.engine, validated)
    return jsonify([job.to_ocean()])
