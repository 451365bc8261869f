"""C2D v2 job status and stop: ``GET``/``PUT compute``, and the job objects they answer.

Status is unsigned (as in Ocean's APIs) and lists only ``consumerAddress``'s jobs; stop is
signed (``stopCompute``, query string). Someone else's job and an unknown job get the same 404.
"""

from __future__ import annotations

from typing import Any

from flask import jsonify
from flask.typing import ResponseReturnValue

from operator_engine.api import JobNotFound
from operator_engine.lifecycle import StopReason
from operator_engine.models import Job
from provider.app import Services, services
from provider.errors import ProviderError
from provider.node import bp, payments
from provider.node.auth import authenticate
from provider.node.discovery import API
from provider.node.environments import public_id
from provider.node.records import NodeJob, node_jobs_of_app
from provider.params import address_param, request_params, require, text_param


def job_view(svc: Services, job: Job, record: NodeJob | None) -> dict[str, Any]:
    """The job object of the v2 API: the V4 one with the environment's public id, the order
    that admitted it as ``agreementId``, whether it ran on a free tier and, for a paid job, its
    escrow ``payment`` (lock and claim transactions, the cost once settled)."""
    body = job.to_ocean()
    body["environment"] = public_id(job.environment)
    if record is not None:
        body["agreementId"] = record.agreement_id
        body["isFree"] = record.kind == "free"
        body["resources"] = [{"id": r, "amount": a} for r, a in record.resources.items()]
        body["maxJobDuration"] = record.max_duration
        if record.kind == "paid":
            body["payment"] = payments.settlement(svc).payment_view(job.job_id)
    return body


@bp.get(f"{API}/compute")
def compute_status() -> ResponseReturnValue:
    params = request_params()
    consumer = address_param(params, "consumerAddress")
    assert consumer is not None
    agreement = text_param(params, "agreementId")
    svc = services()
    jobs = svc.engine.find(consumer, job_id=text_param(params, "jobId"))
    records = node_jobs_of_app().many([job.job_id for job in jobs])
    views = [job_view(svc, job, records.get(job.job_id)) for job in jobs]
    if agreement is not None:
        views = [v for v in views if str(v.get("agreementId") or "").lower() == agreement.lower()]
    return jsonify(views)


@bp.put(f"{API}/compute")
def compute_stop() -> ResponseReturnValue:
    params = request_params()
    require(params, "jobId")
    svc = services()
    consumer = authenticate(svc, params, "stopCompute")
    job = svc.owned_job(consumer, text_param(params, "jobId"))
    try:
        stopped = svc.engine.stop(job.job_id, stopreq=StopReason.OWNER)
    except JobNotFound:
        raise ProviderError("Job not found", 404) from None
    return jsonify([job_view(svc, stopped, node_jobs_of_app().get(job.job_id))])
