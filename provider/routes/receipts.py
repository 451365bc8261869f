"""``GET /api/services/computeReceipt?jobId=&consumerAddress=``: a job's signed receipt.

Unsigned, as status is: it answers only for the job's owner and carries no data (hashes,
sizes, names and times; see :mod:`operator_engine.receipts`). The same ``receipt.json`` is
also one of the job's results (``type: "receipt"``), downloadable like the others.
"""

from __future__ import annotations

from flask import Blueprint, send_file
from flask.typing import ResponseReturnValue

from operator_engine.api import ResultNotFound
from operator_engine.receipts import RESULT_TYPE
from provider.app import services
from provider.errors import ProviderError
from provider.params import address_param, request_params, require, text_param

bp = Blueprint("receipts", __name__)


@bp.get("/api/services/computeReceipt")
def compute_receipt() -> ResponseReturnValue:
    svc = services()
    params = request_params()
    require(params, "consumerAddress", "jobId")
    consumer = address_param(params, "consumerAddress")
    job_id = text_param(params, "jobId")
    assert consumer is not None and job_id is not None
    job = svc.owned_job(consumer, job_id)
    index = next((r.index for r in job.results if r.type == RESULT_TYPE), None)
    if index is None:
        raise ProviderError("This job has no receipt (yet): receipts are written when it ends", 404)
    try:
        path, _result = svc.engine.open_result(job_id, index)
    except ResultNotFound:
        raise ProviderError("The receipt is no longer stored", 404) from None
    return send_file(path, mimetype="application/json")
