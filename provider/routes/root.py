"""``GET /``: discovery (docs/protocol.md §2). Clients look endpoint URLs up by these exact
names."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, jsonify
from flask.typing import ResponseReturnValue

from provider.app import SOFTWARE, VERSION, services

bp = Blueprint("root", __name__)

#: name → [METHOD, path], exactly as ocean.py / ocean.js look them up.
SERVICE_ENDPOINTS: dict[str, list[str]] = {
    "computeDelete": ["DELETE", "/api/services/compute"],
    "computeEnvironments": ["GET", "/api/services/computeEnvironments"],
    "computeResult": ["GET", "/api/services/computeResult"],
    "computeStart": ["POST", "/api/services/compute"],
    "computeStatus": ["GET", "/api/services/compute"],
    "computeStop": ["PUT", "/api/services/compute"],
    "decrypt": ["POST", "/api/services/decrypt"],
    "download": ["GET", "/api/services/download"],
    "encrypt": ["POST", "/api/services/encrypt"],
    "fileinfo": ["POST", "/api/services/fileinfo"],
    "initialize": ["GET", "/api/services/initialize"],
    "initializeCompute": ["POST", "/api/services/initializeCompute"],
    "nonce": ["GET", "/api/services/nonce"],
    "validateContainer": ["POST", "/api/services/validateContainer"],
}


def discovery() -> dict[str, Any]:
    svc = services()
    return {
        "software": SOFTWARE,
        "version": VERSION,
        "chainIds": list(svc.chains),
        "providerAddresses": {str(c.chain_id): c.provider_address for c in svc.chains.values()},
        "serviceEndpoints": SERVICE_ENDPOINTS,
    }


@bp.get("/")
def root() -> ResponseReturnValue:
    return jsonify(discovery())
