"""``GET /api/services/computeEnvironments?chainId=``: the compute environments on offer.

Always an object keyed by chain id (ocean.js 3.4 breaks on a bare list) whose values are lists
of Ocean env objects: numbers are JSON numbers (clients pick a free env by ``priceMin == 0``),
``currentJobs`` is live from the engine, and ``consumerAddress`` (the address compute orders
name as consumer) defaults to the provider's own address. A ``chainId`` this provider does not
serve answers 400 ``Unsupported chain ID``.
"""

from __future__ import annotations

import time

from flask import Blueprint, jsonify
from flask.typing import ResponseReturnValue

from provider.app import services
from provider.params import request_params, require_chain_id, text_param

bp = Blueprint("environments", __name__)


@bp.get("/api/services/computeEnvironments")
def compute_environments() -> ResponseReturnValue:
    svc = services()
    chain_text = text_param(request_params(), "chainId")
    if chain_text is not None:
        require_chain_id(chain_text, svc.chain_id)
    current = svc.engine.current_jobs()
    now = time.time()
    envs = []
    for env in svc.engine.environments():
        if env.free_of is not None:
            continue  # a free tier's engine environment is the /node API's (freeCompute)
        entry = env.to_ocean(int(current.get(env.id, 0)), now)
        if not entry.get("consumerAddress"):
            entry["consumerAddress"] = svc.provider_address
        envs.append(entry)
    return jsonify({str(svc.chain_id): envs})
