"""``GET /api/services/computeEnvironments?chainId=``: the compute environments on offer.

Always an object keyed by chain id (ocean.js 3.4 breaks on a bare list) whose values are lists
of Ocean env objects: numbers are JSON numbers (clients pick a free env by ``priceMin == 0``),
``currentJobs`` is live from the engine, and ``consumerAddress`` (the address compute orders
name as consumer) defaults to the provider's own address. A ``chainId`` this provider does not
serve answers 400 ``Unsupported chain ID``; without ``chainId`` every served chain is listed.
Each chain lists every environment with that chain's fee token (``feeToken`` may be one
address or an object chain id → address). A chain checks each fee token's code once (then
cached); a chain that cannot answers 503 for ``?chainId=`` of it, and an empty list in the
every-chain listing.
"""

from __future__ import annotations

import logging
import time

from flask import Blueprint, jsonify
from flask.typing import ResponseReturnValue

from provider.app import services
from provider.errors import ProviderError
from provider.params import request_params, text_param

bp = Blueprint("environments", __name__)
log = logging.getLogger(__name__)


@bp.get("/api/services/computeEnvironments")
def compute_environments() -> ResponseReturnValue:
    svc = services()
    chain_text = text_param(request_params(), "chainId")
    chains = [svc.chain(chain_text, live=False)] if chain_text is not None else svc.chains.values()
    current = svc.engine.current_jobs()
    now = time.time()
    offered = [env for env in svc.engine.environments() if env.free_of is None]  # see /node
    body = {}
    for chain in chains:
        try:
            here = [chain.offer(env) for env in offered]
        except ProviderError as exc:
            if chain_text is not None:
                raise
            log.warning("chain %s lists no environments: %s", chain.chain_id, exc.message)
            here = []  # another chain's trouble never fails the whole listing
        envs = []
        for env in here:
            entry = env.to_ocean(int(current.get(env.id, 0)), now)
            if not entry.get("consumerAddress"):
                entry["consumerAddress"] = chain.provider_address
            envs.append(entry)
        body[str(chain.chain_id)] = envs
    return jsonify(body)
