"""``GET /api/services/computeResult``: stream one result of a job to its owner.

Signed: ``consumerAddress + jobId + index`` followed by the nonce (docs/protocol.md §3). The nonce
is consumed and the job's owner checked before anything is read; the file path comes from the
job store via ``engine.open_result`` (never from the request) and is sent with Flask's
``send_file`` (``wsgi.file_wrapper``: sendfile(2) under gunicorn) and ``Content-Disposition:
attachment;filename=<name>``. A single ``Range`` answers 206 with ``Content-Range`` (416 when
unsatisfiable). Someone else's job, an unknown job and an index out of range all answer 4xx
JSON and no bytes.

``GET /api/services/computeLogs``: the running algorithm's stdout/stderr streamed to the job's
owner as it is written (:mod:`provider.logstream`), signed ``consumerAddress + jobId`` followed
by the nonce (computeResult's layout without the index).
"""

from __future__ import annotations

import re
from functools import partial
from typing import Any

from flask import Blueprint, Response, send_file
from flask.typing import ResponseReturnValue

from operator_engine.api import JobNotFound, ResultNotFound
from operator_engine.models import Job
from provider.app import Services, services
from provider.errors import ProviderError, RequestValidationError
from provider.logstream import log_response
from provider.params import address_param, is_digits, lookup, request_params, require, text_param
from provider.request_auth import logs_text, result_text, verify_request

bp = Blueprint("results", __name__)
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


def safe_filename(name: str) -> str:
    """``name`` reduced to a header-safe file name (algorithms choose result names).

    >>> safe_filename("out/summary stats.csv"), safe_filename('a"\\r\\nb')
    ('out_summary_stats.csv', 'a___b')
    """
    return _UNSAFE.sub("_", name) or "result"


def result_params(params: dict[str, Any]) -> tuple[str, str, str]:
    """(consumerAddress, jobId, index as sent) of a computeResult request, validated; both
    APIs read these the same way."""
    require(params, "consumerAddress", "jobId", "index")
    consumer = address_param(params, "consumerAddress")
    job_id = text_param(params, "jobId")
    index_text = text_param(params, "index")
    assert consumer is not None and job_id is not None and index_text is not None
    if not is_digits(index_text):
        raise RequestValidationError({"index": ["The index field must be a non-negative integer."]})
    return consumer, job_id, index_text


@bp.get("/api/services/computeResult")
def compute_result() -> ResponseReturnValue:
    svc = services()
    params = request_params()
    consumer, job_id, index_text = result_params(params)
    verify_request(
        consumer,
        lookup(params, "signature"),
        lookup(params, "nonce"),
        partial(result_text, consumer, job_id, index_text),
        store=svc.nonces,
    )
    job = svc.owned_job(consumer, job_id)
    return result_response(svc, job, int(index_text))


@bp.get("/api/services/computeLogs")
def compute_logs() -> ResponseReturnValue:
    svc = services()
    params = request_params()
    require(params, "consumerAddress", "jobId")
    consumer = address_param(params, "consumerAddress")
    job_id = text_param(params, "jobId")
    assert consumer is not None and job_id is not None
    verify_request(
        consumer,
        lookup(params, "signature"),
        lookup(params, "nonce"),
        partial(logs_text, consumer, job_id),
        store=svc.nonces,
    )
    job = svc.owned_job(consumer, job_id)
    env = svc.engine.environment(job.environment)
    limit = (env.max_job_duration if env is not None else 3600) + 600
    locate = svc.engine.services.folder(job.job_id).live_algorithm_log

    def ended() -> bool:
        current = svc.engine.get(job_id)
        return current is None or current.is_terminal

    return log_response(ended, locate, limit)


def result_response(svc: Services, job: Job, index: int) -> Response:
    """Result ``index`` of ``job`` (its owner already checked) sent from the job store with
    ``Range`` support; 404 JSON when there is no such result (any more)."""
    if index >= len(job.results):
        raise ProviderError("Result not found", 404)
    try:
        path, result = svc.engine.open_result(job.job_id, index)
        response = send_file(
            path,  # absolute (a relative one would be taken from the app's root)
            mimetype="application/octet-stream",
            conditional=True,
            etag=False,
            max_age=0,
        )
    except (ResultNotFound, JobNotFound, FileNotFoundError):
        raise ProviderError("Result not found", 404) from None
    disposition = f"attachment;filename={safe_filename(result.filename)}"
    response.headers["Content-Disposition"] = disposition
    return response
