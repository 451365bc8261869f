"""Ocean Node's C2D v2 compute API under ``/node`` (ocean.js 8), beside the V4 API at ``/``.

One blueprint, ``bp``, mounted at ``/node``: ocean.js 8 users set ``oceanNodeUri`` to
``http://host:8030/node`` and the client joins every ``serviceEndpoints`` path of ``GET /node``
onto that base. Both APIs share the nonce store, the engine, orders, the indexer and the
environments; see ``docs/node-api.md``.
"""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("node", __name__, url_prefix="/node")

# Route modules attach their views to ``bp`` when imported.
from provider.node import auth, compute, discovery, jobs, results  # noqa: E402

__all__ = ["auth", "bp", "compute", "discovery", "jobs", "results"]
