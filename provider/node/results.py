"""``GET computeResult`` (V4 or v2 signature, ``Range``) and ``GET computeStreamableLogs``.

Results: signed either as V4 (``consumerAddress + jobId + index + nonce``) or as v2
(``consumerAddress + nonce + "getComputeResult"``); one nonce is consumed either way. The file
comes from the job store, never from the request, and is sent with ``Range`` support so an
interrupted download resumes (``Range: bytes=<offset>-``).

Logs: the running algorithm's ``algorithm.log`` streamed as it grows (chunked transfer), in
fixed-size reads, until the job ends; then the rest of the file and the end of the response.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from flask import Response
from flask.typing import ResponseReturnValue

from provider.app import Services, services
from provider.errors import SignatureError
from provider.node import bp
from provider.node.auth import authenticate, bearer
from provider.node.discovery import API
from provider.node.jobs import owned_job
from provider.nonces import nonce_param_text, require_signature
from provider.params import (
    lookup,
    request_params,
    require,
    text_param,
)
from provider.routes.results import result_params, result_response
from provider.signatures import (
    command_text,
    recover_command_signer,
    recover_signer,
    signed_text,
)

CHUNK = 64 * 1024
POLL_S = 0.25


def _verify_result_request(
    svc: Services, consumer: str, job_id: str, index: str, params: dict
) -> None:
    if bearer() is not None:
        authenticate(svc, params, "getComputeResult")  # the token must be consumerAddress's
        return
    signature = require_signature(lookup(params, "signature"))
    nonce = nonce_param_text(lookup(params, "nonce"))
    signers = {
        recover_command_signer(command_text(consumer, nonce, "getComputeResult"), signature),
        recover_signer(signed_text(consumer + job_id + index, nonce), signature),
    }
    if consumer.lower() not in {s.lower() for s in signers}:
        raise SignatureError("Invalid signature: the signer is not consumerAddress.")
    svc.nonces.consume(consumer, nonce)


@bp.get(f"{API}/computeResult")
def compute_result() -> ResponseReturnValue:
    svc = services()
    params = request_params()
    consumer, job_id, index_text = result_params(params)
    _verify_result_request(svc, consumer, job_id, index_text, params)
    return result_response(svc, owned_job(svc, consumer, job_id), int(index_text))


def follow_log(
    svc: Services, job_id: str, locate: Callable[[], Path], deadline: float
) -> Iterator[bytes]:
    """The log at ``locate()``'s bytes as they are written, until the job is terminal (or
    ``deadline``). The log moves once (from the run's disk-share area into ``logs/``, same
    bytes): the new file is read on from the bytes already sent."""
    handle = None
    sent = 0
    try:
        while True:
            job = svc.engine.get(job_id)
            ended = job is None or job.is_terminal or time.monotonic() > deadline
            path = locate()
            try:
                moved = (
                    handle is not None and os.stat(path).st_ino != os.fstat(handle.fileno()).st_ino
                )
            except OSError:
                moved = False
            if handle is not None and moved:
                while chunk := handle.read(CHUNK):  # what the old file still holds
                    sent += len(chunk)
                    yield chunk
                handle.close()
                handle = None
            if handle is None and path.is_file():
                handle = path.open("rb")
                handle.seek(sent)
            if handle is not None:
                while chunk := handle.read(CHUNK):
                    sent += len(chunk)
                    yield chunk
            if ended:
                return
            time.sleep(POLL_S)
    finally:
        if handle is not None:
            handle.close()


@bp.get(f"{API}/computeStreamableLogs")
def compute_streamable_logs() -> ResponseReturnValue:
    svc = services()
    params = request_params()
    require(params, "consumerAddress", "jobId")
    consumer = authenticate(svc, params, "getComputeStreamableLogs")
    job = owned_job(svc, consumer, text_param(params, "jobId"))
    env = svc.engine.environment(job.environment)
    limit = (env.max_job_duration if env is not None else 3600) + 600
    folder = svc.engine.services.folder(job.job_id)
    stream = follow_log(svc, job.job_id, folder.live_algorithm_log, time.monotonic() + limit)
    return Response(stream, status=200, mimetype="text/plain")
