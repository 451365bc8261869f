"""``GET computeResult`` (V4 or v2 signature, ``Range``) and ``GET computeStreamableLogs``.

Results: signed either as V4 (``consumerAddress + jobId + index + nonce``) or as v2
(``consumerAddress + nonce + "getComputeResult"``); one nonce is consumed either way. The file
comes from the job store, never from the request, and is sent with ``Range`` support so an
interrupted download resumes (``Range: bytes=<offset>-``).

Logs: the running algorithm's ``algorithm.log`` streamed as it grows, until the job ends
(:mod:`provider.logstream`, shared with the V4 ``computeLogs``).
"""

from __future__ import annotations

from functools import partial

from flask.typing import ResponseReturnValue

from provider.app import Services, services
from provider.logstream import log_response
from provider.node import bp
from provider.node.auth import authenticate, bearer
from provider.node.discovery import API
from provider.params import (
    lookup,
    request_params,
    require,
    text_param,
)
from provider.request_auth import result_text, verify_command
from provider.routes.results import result_params, result_response


def _verify_result_request(
    svc: Services, consumer: str, job_id: str, index: str, params: dict
) -> None:
    if bearer() is not None:
        authenticate(svc, params, "getComputeResult")  # the token must be consumerAddress's
        return
    verify_command(
        consumer,
        lookup(params, "signature"),
        lookup(params, "nonce"),
        "getComputeResult",
        store=svc.nonces,
        v4_layout=partial(result_text, consumer, job_id, index),
    )


@bp.get(f"{API}/computeResult")
def compute_result() -> ResponseReturnValue:
    svc = services()
    params = request_params()
    consumer, job_id, index_text = result_params(params)
    _verify_result_request(svc, consumer, job_id, index_text, params)
    return result_response(svc, svc.owned_job(consumer, job_id), int(index_text))


@bp.get(f"{API}/computeStreamableLogs")
def compute_streamable_logs() -> ResponseReturnValue:
    svc = services()
    params = request_params()
    require(params, "consumerAddress", "jobId")
    consumer = authenticate(svc, params, "getComputeStreamableLogs")
    job = svc.owned_job(consumer, text_param(params, "jobId"))
    env = svc.engine.environment(job.environment)
    limit = (env.max_job_duration if env is not None else 3600) + 600
    locate = svc.engine.services.folder(job.job_id).live_algorithm_log
    return log_response(lambda: _ended(svc, job.job_id), locate, limit)


def _ended(svc: Services, job_id: str) -> bool:
    job = svc.engine.get(job_id)
    return job is None or job.is_terminal
