"""``GET /openapi.json``: the OpenAPI 3 document of every registered route."""

from __future__ import annotations

from flask import Blueprint, current_app, jsonify
from flask.typing import ResponseReturnValue

from provider.openapi import build_spec

bp = Blueprint("openapi", __name__)


@bp.get("/openapi.json")
def openapi() -> ResponseReturnValue:
    spec = current_app.extensions.get("tidewater.openapi")
    if spec is None:
        spec = current_app.extensions["tidewater.openapi"] = build_spec(current_app)
    return jsonify(spec)
