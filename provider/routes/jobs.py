"""Job status, stop and delete: ``GET``/``PUT``/``DELETE /api/services/compute``.

Parameters come from the query string (ocean.py) or a JSON body (ocean.js). Every answer is a
list of Ocean job objects (docs/protocol.md §6). Only the job's owner can see, stop or delete it;
an unknown job and someone else's job get the same 404, so nothing leaks about other owners.

Signing rules (``+`` is string concatenation, ``nonce`` the text as sent; docs/protocol.md §3, §6;
``doc`` is ``documentId`` or ""):

- GET (status): unsigned; answers only ``consumerAddress``'s jobs.
- PUT (stop), ocean.py (query string): ``consumerAddress + jobId + doc + nonce``; nonce consumed.
- PUT (stop), ocean.js 3.4 (JSON body): ``consumerAddress + jobId``; the nonce it sends is not
  signed, but is consumed when present.
- DELETE, ocean.py (query string): ``consumerAddress + jobId + doc + nonce``; nonce consumed.
- DELETE, ocean.js 3.4 (JSON body, no ``nonce`` field): ``consumerAddress + jobId + doc +
  (stored + 1)``; the provider computes stored + 1, verifies, and consumes it.

A consumed nonce must be greater than the stored one and is stored before the job is touched,
so a replayed request gets 400. The ocean.js stop form is accepted because that client signs
no nonce; its (unsigned) nonce is still consumed when sent so a verbatim replay is refused, and
stop is idempotent anyway: replaying it can only stop a job its owner already asked to stop.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from flask import Blueprint, current_app, jsonify
from flask.typing import ResponseReturnValue

from operator_engine.api import JobNotFound
from operator_engine.lifecycle import StopReason
from operator_engine.statuses import JobStatus, status_text
from provider.app import services
from provider.errors import ProviderError, SignatureError
from provider.params import address_param, lookup, request_params, require, text_param
from provider.request_auth import (
    job_text,
    nonce_param_text,
    require_signature,
    signer_matches,
    unsigned_nonce_stop_text,
    verify_request,
    verify_with_next_nonce,
)

bp = Blueprint("jobs", __name__)
PATH = "/api/services/compute"


def _signed_params(params: dict[str, Any]) -> tuple[str, str, str | None, str]:
    require(params, "consumerAddress", "jobId")
    consumer = address_param(params, "consumerAddress")
    job_id = text_param(params, "jobId")
    assert consumer is not None and job_id is not None
    did = text_param(params, "documentId")
    signature = require_signature(lookup(params, "signature"))
    return consumer, job_id, did, signature


@bp.get(PATH)
def status() -> ResponseReturnValue:
    params = request_params()
    consumer = address_param(params, "consumerAddress")
    assert consumer is not None
    jobs = services().engine.find(
        consumer, job_id=text_param(params, "jobId"), did=text_param(params, "documentId")
    )
    # jsonify([job.to_ocean() ...]) byte for byte, from each job's JSON encoded once
    body = "[" + ",".join(job.ocean_json for job in jobs) + "]\n"
    return current_app.response_class(body, mimetype="application/json")


@bp.put(PATH)
def stop() -> ResponseReturnValue:
    svc = services()
    params = request_params()
    consumer, job_id, did, signature = _signed_params(params)
    nonce_raw = lookup(params, "nonce")
    nonce = None if nonce_raw is None or nonce_raw == "" else nonce_param_text(nonce_raw)
    if nonce is not None and signer_matches(
        consumer, signature, job_text(consumer, job_id, did, nonce)
    ):
        svc.nonces.consume(consumer, nonce)
    elif signer_matches(consumer, signature, unsigned_nonce_stop_text(consumer, job_id)):
        if nonce is not None:
            svc.nonces.consume(consumer, nonce)
    else:
        raise SignatureError("Invalid signature: the signer is not consumerAddress.")
    job = svc.owned_job(consumer, job_id, did)
    try:
        stopped = svc.engine.stop(job.job_id, stopreq=StopReason.OWNER)
    except JobNotFound:  # deleted meanwhile
        raise ProviderError("Job not found", 404) from None
    return jsonify([stopped.to_ocean()])


@bp.delete(PATH)
def delete() -> ResponseReturnValue:
    svc = services()
    params = request_params()
    consumer, job_id, did, signature = _signed_params(params)
    layout = partial(job_text, consumer, job_id, did)
    if lookup(params, "nonce") not in (None, ""):
        verify_request(consumer, signature, lookup(params, "nonce"), layout, store=svc.nonces)
    else:
        verify_with_next_nonce(consumer, signature, layout, store=svc.nonces)
    job = svc.owned_job(consumer, job_id, did)
    try:
        body = svc.engine.delete(job.job_id).to_ocean()
    except JobNotFound:  # deleted meanwhile
        raise ProviderError("Job not found", 404) from None
    body["status"] = int(JobStatus.DELETED)
    body["statusText"] = status_text(JobStatus.DELETED)
    return jsonify([body])
