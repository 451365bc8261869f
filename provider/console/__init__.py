"""The operator console: ``GET /console``, a page served by the provider itself (plain HTML,
CSS and JavaScript shipped as package data: no build step, no CDN), fed live by
``GET /api/console/events`` (Server-Sent Events).

The page asks once for an admin token (kept in ``sessionStorage``) and trades it for a ticket
(``POST /api/console/ticket``, admin API) because EventSource cannot send headers; a ticket in
the URL expires in a minute and names no secret, where the token itself would sit in access
logs and history. The stream sends a snapshot (:mod:`provider.console.snapshot`) whenever it
changes, a keep-alive comment otherwise, and ends after :data:`STREAM_SECONDS` so tickets are
re-checked (a revoked token loses the console at the next reconnect). Stopping a job goes
through the admin API (``POST /api/jobs/<id>/stop``).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from importlib.resources import files

from flask import Blueprint, Response, current_app, jsonify, request

from operator_engine.workspace import JobFolder
from provider.admin.routes import _admin
from provider.admin.tokens import TokenStore
from provider.console.snapshot import log_tail
from provider.console.snapshot import snapshot as take_snapshot

bp = Blueprint("console", __name__)

#: the files the page is made of: name → content type
ASSETS = {
    "console.css": "text/css; charset=utf-8",
    "console.js": "text/javascript; charset=utf-8",
}
STREAM_SECONDS = 300
TICK_S = 1.0
KEEPALIVE_S = 15.0


def _static(name: str) -> bytes:
    return files(__name__).joinpath("static", name).read_bytes()


def _no_store(response: Response) -> Response:
    response.headers["Cache-Control"] = "no-store"
    response.headers["Content-Security-Policy"] = (
        "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
        "connect-src 'self'; frame-ancestors 'none'"
    )
    return response


@bp.get("/console")
def page() -> Response:
    """The page (it holds no data: everything comes through the token-protected API)."""
    return _no_store(Response(_static("console.html"), mimetype="text/html"))


@bp.get("/console/<name>")
def asset(name: str) -> Response:
    if name not in ASSETS:
        missing = jsonify(error=f"no console file {name!r}")
        missing.status_code = 404
        return missing
    return _no_store(Response(_static(name), content_type=ASSETS[name]))


def _events(db: object) -> Iterator[bytes]:
    data_dir = current_app.extensions["tidewater"].settings.data_dir

    def tail(job_id: str) -> str:
        return log_tail(JobFolder.of(data_dir, job_id).live_algorithm_log())

    yield b"retry: 2000\n\n"
    last, quiet_since = "", time.monotonic()
    end = time.monotonic() + STREAM_SECONDS
    while time.monotonic() < end:
        snap = take_snapshot(db, _admin().entries(), datetime.now(UTC), tail)  # type: ignore[arg-type]
        current = json.dumps(snap)
        if current != last:
            yield b"event: snapshot\ndata: " + current.encode() + b"\n\n"
            last, quiet_since = current, time.monotonic()
        elif time.monotonic() - quiet_since > KEEPALIVE_S:
            yield b": keep-alive\n\n"
            quiet_since = time.monotonic()
        time.sleep(TICK_S)


@bp.get("/api/console/events")
def events() -> Response:
    """The console's live feed (``?ticket=`` from ``POST /api/console/ticket``)."""
    db = current_app.extensions["tidewater"].db
    ticket = request.args.get("ticket", "")
    if not ticket or not TokenStore(db).check_ticket(ticket):
        response = jsonify(error="console: missing, expired or revoked ticket")
        response.status_code = 403
        return response
    app = current_app._get_current_object()  # type: ignore[attr-defined]

    def stream() -> Iterator[bytes]:
        with app.app_context():
            yield from _events(db)

    response = Response(stream(), mimetype="text/event-stream")
    response.headers["Cache-Control"] = "no-cache"
    response.headers["X-Accel-Buffering"] = "no"
    return response
