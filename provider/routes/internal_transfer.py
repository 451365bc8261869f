"""``/internal/jobs/<id>/inputs`` and ``/outputs``: a job pod's data in and out (Kubernetes).

Job pods cannot see the provider's data dir, so the Kubernetes backend's init container pulls
the job's staged inputs (``GET …/inputs``: a tar of ``inputs/``, ``transformations/`` and
``ddos/``) and its finisher pushes the outputs (``PUT …/outputs``: a tar of ``outputs/``),
each authenticated by a one-time job token (``Authorization: Bearer``, see
:mod:`operator_engine.transfer_tokens`). Refusals are JSON ``{"error", "code"}``: 401 no,
unknown or expired token; 403 a token of another job or direction; 404 a job without staged
data; 409 a token already used, outputs not accepted yet, or already received; 413 an upload
past the job's disk share; 400 a body that is not an acceptable tar. Pushed outputs land in the
job's ``outputs/`` folder, where the engine's publish stage records them as results.
"""

from __future__ import annotations

import re
import secrets
import shutil
from pathlib import Path
from typing import Any

from flask import Blueprint, Response, request
from flask.typing import ResponseReturnValue

from operator_engine import transfer_tokens
from operator_engine.transfer_tar import TarRefused, extract, stream
from operator_engine.workspace import JobFolder
from provider.app import services
from provider.errors import ProviderError

bp = Blueprint("internal_transfer", __name__)
INPUT_TOPS = ("inputs", "transformations", "ddos")
_JOB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$")


class TransferError(ProviderError):
    """A refused transfer: ``{"error": message, "code": code}``."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message, status)
        self.code = code

    def payload(self) -> dict[str, Any]:
        return {"error": self.message, "code": self.code}


def _job_root(job_id: str) -> Path:
    """The job's folder in the data dir shared with the engine (where its workspace lives)."""
    if not _JOB_ID.match(job_id):
        raise TransferError(404, "no_job", "no such job")
    return JobFolder.of(Path(services().settings.data_dir), job_id).root


def _redeem(job_id: str, direction: str) -> transfer_tokens.Grant:
    header = request.headers.get("Authorization", "")
    token = header[7:].strip() if header[:7].lower() == "bearer " else None
    try:
        return transfer_tokens.redeem(services().settings.data_dir, job_id, direction, token)
    except transfer_tokens.TransferDenied as exc:
        raise TransferError(exc.status, exc.code, exc.message) from None


@bp.get("/internal/jobs/<job_id>/inputs")
def inputs(job_id: str) -> ResponseReturnValue:
    """The job's staged inputs as one tar stream (the token is spent before any byte)."""
    root = _job_root(job_id)
    if not (root / "inputs").is_dir():
        raise TransferError(404, "no_inputs", "this job has no staged inputs")
    _redeem(job_id, "inputs")
    return Response(stream(root, INPUT_TOPS), mimetype="application/x-tar")


@bp.put("/internal/jobs/<job_id>/outputs")
def outputs(job_id: str) -> ResponseReturnValue:
    """Receive the job's outputs tar into ``outputs/`` (all of it, or nothing)."""
    root = _job_root(job_id)
    if not root.is_dir():
        raise TransferError(404, "no_job", "no such job")
    grant = _redeem(job_id, "outputs")
    landing = root / "outputs"
    if landing.is_symlink() or (landing.exists() and any(landing.iterdir())):
        raise TransferError(409, "already_received", "this job's outputs are already there")
    request.max_content_length = None  # bounded by the grant while extracting
    staging = root / f".received-{secrets.token_hex(6)}"
    staging.mkdir(mode=0o700)
    try:
        files, size = extract(
            request.stream,
            staging,
            ("outputs",),
            max_bytes=grant.max_bytes,
            max_entries=grant.max_entries or 100_000,
        )
        (staging / "outputs").mkdir(exist_ok=True)
        if landing.exists():
            landing.rmdir()
        (staging / "outputs").rename(landing)
    except TarRefused as exc:
        status, code = (413, "too_large") if exc.too_large else (400, "bad_tar")
        raise TransferError(status, code, f"outputs refused: {exc}") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return {"jobId": job_id, "files": files, "bytes": size}
