"""Admin API routes (bearer-token protected): compute environments, batches, service info."""

from __future__ import annotations

import subprocess
from functools import cache
from pathlib import Path
from typing import Any

from flask import Response, current_app, jsonify, request

from operator_engine.environments import EnvironmentRegistry
from operator_engine.statuses import TERMINAL
from operator_engine.store import JobStore
from provider.admin import batches as batch_views
from provider.admin import bp
from provider.admin.envs import AdminError, EnvAdmin
from provider.admin.tokens import TokenStore
from tidewater import __version__

API_VERSION = "1.0.0"

#: every admin route (method, rule): the auth test and the OpenAPI entries iterate over it
ROUTES: tuple[tuple[str, str], ...] = (
    ("GET", "/service-info"),
    ("GET", "/api/compute-envs"),
    ("POST", "/api/compute-envs"),
    ("GET", "/api/compute-envs/<env_id>"),
    ("PUT", "/api/compute-envs/<env_id>"),
    ("DELETE", "/api/compute-envs/<env_id>"),
    ("POST", "/api/compute-envs/<env_id>/primary"),
    ("GET", "/api/batches"),
    ("DELETE", "/api/batches"),
    ("GET", "/api/batches/<env_id>"),
    ("DELETE", "/api/batches/<env_id>"),
    ("GET", "/api/batches/<env_id>/jobs"),
    ("GET", "/api/batches/<env_id>/jobs/<job_id>"),
)


def _svc() -> Any:
    return current_app.extensions["tidewater"]


def _store() -> JobStore:
    return JobStore(_svc().db)


def _admin() -> EnvAdmin:
    svc = _svc()
    engine = getattr(svc, "engine", None)
    registry = getattr(engine, "registry", None)
    if not isinstance(registry, EnvironmentRegistry):
        registry = EnvironmentRegistry(svc.settings.environments_file, _store())
    return EnvAdmin(_store(), registry, getattr(engine, "runner", None))


@bp.errorhandler(AdminError)
def _admin_error(exc: AdminError) -> tuple[Response, int]:
    return jsonify(message=exc.message), exc.status_code


@bp.before_request
def _require_token() -> tuple[Response, int] | None:
    if request.method == "OPTIONS":
        return None
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return jsonify(message="admin API: missing 'Authorization: Bearer <token>'"), 403
    if not TokenStore(_svc().db).is_valid(token.strip()):
        return jsonify(message="admin API: invalid or revoked token"), 403
    return None


@cache
def commit_id() -> str:
    """The git revision of the running code, or ``unknown``."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.stdout.strip() or "unknown"


@bp.get("/service-info")
def service_info() -> Response:
    return jsonify(
        serviceInfo={
            "version": __version__,
            "apiVersion": API_VERSION,
            "commitId": commit_id(),
            "authTypes": ["bearer"],
            "platforms": ["docker"],
        }
    )


@bp.get("/api/compute-envs")
def list_envs() -> Response:
    return jsonify(computeEnvs=_admin().summaries())


def _json() -> Any:
    body = request.get_json(silent=True)
    if body is None:
        raise AdminError("body must be JSON (Content-Type: application/json)")
    return body


@bp.post("/api/compute-envs")
def create_env() -> Response:
    body = _json()
    spec = body.get("computeEnv") if isinstance(body, dict) else None
    name = spec.get("name") if isinstance(spec, dict) else None
    env_id = _admin().create(body, name if isinstance(name, str) else "")
    return jsonify(computeEnvId=env_id)


@bp.get("/api/compute-envs/<env_id>")
def describe_env(env_id: str) -> Response:
    return jsonify(_admin().describe(env_id))


@bp.put("/api/compute-envs/<env_id>")
def update_env(env_id: str) -> Response:
    admin = _admin()
    admin.managed(env_id)
    admin.update(env_id, _json())
    return jsonify(admin.describe(env_id))


@bp.delete("/api/compute-envs/<env_id>")
def delete_env(env_id: str) -> Response:
    drain = request.args.get("drain", "false").lower() in ("1", "true", "yes")
    _admin().delete(env_id, drain=drain)
    return Response(status=204)


@bp.post("/api/compute-envs/<env_id>/primary")
def primary_env(env_id: str) -> Response:
    _admin().make_primary(env_id)
    return Response(status=204)


@bp.get("/api/batches")
def list_batches() -> Response:
    rows = batch_views.job_rows(_svc().db)
    out = []
    for env_id, entry in _admin().entries().items():
        out.append(
            {
                "batch_id": env_id,
                "batch_tool": "docker",
                "n_jobs": sum(1 for r in rows if r.environment == env_id),
                "hardware": batch_views.hardware(entry.env),
            }
        )
    return jsonify(out)


@bp.get("/api/batches/<env_id>")
def batch_counts(env_id: str) -> Response:
    _admin().entry(env_id)
    return jsonify(batch_views.counts(batch_views.job_rows(_svc().db, env_id)))


@bp.get("/api/batches/<env_id>/jobs")
def batch_jobs(env_id: str) -> Response:
    env = _admin().entry(env_id).env
    return jsonify([batch_views.job_view(r, env) for r in batch_views.job_rows(_svc().db, env_id)])


@bp.get("/api/batches/<env_id>/jobs/<job_id>")
def batch_job(env_id: str, job_id: str) -> Response:
    env = _admin().entry(env_id).env
    row = _store().row(job_id)
    if row is None or row.environment != env_id:
        raise AdminError(f"job {job_id!r} not found in batch {env_id!r}", 404)
    return jsonify(batch_views.job_view(row, env))


def _stop_and_delete(env_id: str | None) -> int:
    """Stop and delete the jobs of one environment (or all) through the engine; the count."""
    engine = getattr(_svc(), "engine", None)
    store = _store()
    rows = batch_views.job_rows(_svc().db, env_id)
    for row in rows:
        if engine is not None and hasattr(engine, "delete"):
            engine.delete(row.job_id)
        elif row.status in {int(s) for s in TERMINAL}:
            store.delete(row.job_id)
        else:
            store.update(row.job_id, stopreq=1)
    return len(rows)


@bp.delete("/api/batches/<env_id>")
def delete_batch(env_id: str) -> Response:
    _admin().entry(env_id)
    _stop_and_delete(env_id)
    return Response(status=204)


@bp.delete("/api/batches")
def delete_batches() -> Response:
    _stop_and_delete(None)
    return Response(status=204)
