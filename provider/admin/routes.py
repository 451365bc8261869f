"""Admin API routes (bearer-token protected): compute environments, batches, service info."""

from __future__ import annotations

import subprocess
from functools import cache
from pathlib import Path
from typing import Any

from flask import Response, current_app, jsonify, request

from datastore.jobs import JobStore
from operator_engine.api import JobNotFound
from operator_engine.credentials import CredentialStore
from operator_engine.environments import EnvironmentRegistry
from operator_engine.lifecycle import StopReason
from operator_engine.statuses import TERMINAL
from provider.admin import batches as batch_views
from provider.admin import bp
from provider.admin.envs import EnvAdmin, iso
from provider.admin.tokens import TICKET_SECONDS, TokenStore
from provider.errors import AdminError
from tidewater import __version__

API_VERSION = "1.0.0"

#: every admin route (method, rule): the auth test and the OpenAPI entries iterate over it;
#: ``PUBLIC`` ones answer without a token
ROUTES: tuple[tuple[str, str], ...] = (
    ("GET", "/service-info"),
    ("GET", "/api/compute-envs"),
    ("POST", "/api/compute-envs"),
    ("GET", "/api/compute-envs/validate"),
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
    ("GET", "/api/credentials"),
    ("POST", "/api/credentials"),
    ("DELETE", "/api/credentials/<credentials_id>"),
    ("GET", "/tokens"),
    ("POST", "/tokens"),
    ("DELETE", "/tokens/<token_id>"),
    ("POST", "/api/console/ticket"),
    ("POST", "/api/jobs/<job_id>/stop"),
)
PUBLIC: frozenset[str] = frozenset({"/service-info"})
#: the largest request body the provider reads (Flask's MAX_CONTENT_LENGTH)
CONTENT_MAX_FILE_SIZE = 16 * 1024 * 1024


def _svc() -> Any:
    return current_app.extensions["tidewater"]


def _store() -> JobStore:
    return JobStore(_svc().db)


def _credentials() -> CredentialStore:
    svc = _svc()
    return CredentialStore(svc.db, svc.settings.credentials_key)


def _admin() -> EnvAdmin:
    svc = _svc()
    engine = getattr(svc, "engine", None)
    registry = getattr(engine, "registry", None)
    if not isinstance(registry, EnvironmentRegistry):
        registry = EnvironmentRegistry(svc.settings.environments_file, _store())
    return EnvAdmin(_store(), registry, getattr(engine, "backends", None), _credentials())


@bp.before_request
def _require_token() -> None:
    if request.method == "OPTIONS" or request.url_rule is None:
        return None
    if request.url_rule.rule in PUBLIC:
        return None
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise AdminError("admin API: missing 'Authorization: Bearer <token>'", 403)
    if not TokenStore(_svc().db).is_valid(token.strip()):
        raise AdminError("admin API: invalid or revoked token", 403)
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
    """Public (document 003): what the service is; no secret in it."""
    return jsonify(
        serviceInfo={
            "version": __version__,
            "apiVersion": API_VERSION,
            "commitId": commit_id(),
            "authTypes": ["bearer"],
            "contentMaxFileSize": CONTENT_MAX_FILE_SIZE,
            "platforms": _admin().platforms(),
        }
    )


@bp.get("/api/compute-envs")
def list_envs() -> Response:
    return jsonify(message=None, computeEnvs=_admin().summaries())


@bp.get("/api/compute-envs/validate")
def validate_env_name() -> Response:
    """204 when ``name`` is free and well-formed, 400 malformed, 409 taken."""
    _admin().check_name(request.args.get("name"))
    return Response(status=204)


def _json() -> Any:
    body = request.get_json(silent=True)
    if body is None:
        raise AdminError("body must be JSON (Content-Type: application/json)")
    return body


@bp.post("/api/compute-envs")
def create_env() -> Response:
    """Create; the id is made from the name (see ``envs.env_id_of``)."""
    return jsonify(computeEnvId=_admin().create(_json()))


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


def _platform(env_id: str) -> str:
    return _admin().entry(env_id).env.platform


@bp.get("/api/batches")
def list_batches() -> Response:
    rows = batch_views.job_rows(_svc().db)
    admin = _admin()
    return jsonify(
        [
            batch_views.batch_view(
                entry.env,
                entry.env.platform,
                sum(1 for r in rows if r.environment == env_id),
            )
            for env_id, entry in admin.entries().items()
        ]
    )


@bp.get("/api/batches/<env_id>")
def batch_counts(env_id: str) -> Response:
    _admin().entry(env_id)
    return jsonify(batch_views.counts(batch_views.job_rows(_svc().db, env_id)))


@bp.get("/api/batches/<env_id>/jobs")
def batch_jobs(env_id: str) -> Response:
    _admin().entry(env_id)
    platform = _platform(env_id)
    rows = batch_views.job_rows(_svc().db, env_id)
    return jsonify([batch_views.job_summary(r, platform) for r in rows])


@bp.get("/api/batches/<env_id>/jobs/<job_id>")
def batch_job(env_id: str, job_id: str) -> Response:
    env = _admin().entry(env_id).env
    row = _store().row(job_id)
    if row is None or row.environment != env_id:
        raise AdminError(f"job {job_id!r} not found in batch {env_id!r}", 404)
    return jsonify(batch_views.job_detail(row, env))


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
            store.update(row.job_id, stopreq=int(StopReason.OWNER))
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


# -- credentials and tokens (document 003 / the Tower API) ---------------------------------------


def _credentials_view(cred: Any) -> dict[str, Any]:
    return {
        "id": cred.id,
        "name": cred.name,
        "description": cred.description,
        "provider": cred.provider,
        "keys": cred.public_keys(),
        "deleted": False,
        "dateCreated": iso(cred.date_created),
        "lastUpdated": iso(cred.last_updated),
    }


@bp.get("/api/credentials")
def list_credentials() -> Response:
    return jsonify(credentials=[_credentials_view(c) for c in _credentials().list()])


@bp.post("/api/credentials")
def create_credentials() -> Response:
    return jsonify(credentialsId=_credentials().create(_json()))


@bp.delete("/api/credentials/<credentials_id>")
def delete_credentials(credentials_id: str) -> Response:
    """Delete; environments that name it become INVALID until they are changed."""
    if not _credentials().delete(credentials_id):
        raise AdminError(f"credentials {credentials_id!r} not found", 404)
    return Response(status=204)


def _token_view(info: Any) -> dict[str, Any]:
    return {
        "id": info.id,
        "name": info.name,
        "lastUsed": None,
        "dateCreated": iso(info.date_created),
    }


@bp.get("/tokens")
def list_tokens() -> Response:
    """Live tokens (revoked ones are gone, as deleted tokens are in the document)."""
    tokens = TokenStore(_svc().db).list()
    return jsonify(tokens=[_token_view(t) for t in tokens if t.revoked_at is None])


@bp.post("/tokens")
def create_token() -> Response:
    """``{"name"}`` → ``{"accessKey": <the token, shown once>, "token": {...}}``."""
    body = _json()
    name = body.get("name") if isinstance(body, dict) else None
    if not isinstance(name, str) or not name.strip() or len(name) > 200:
        raise AdminError("name: required, 1-200 characters")
    store = TokenStore(_svc().db)
    access_key = store.create(name.strip())
    info = next(t for t in store.list() if t.name == name.strip())
    return jsonify(accessKey=access_key, token=_token_view(info))


@bp.delete("/tokens/<token_id>")
def delete_token(token_id: str) -> Response:
    live = {t.id for t in TokenStore(_svc().db).list() if t.revoked_at is None}
    if token_id not in live:
        raise AdminError(f"token {token_id!r} not found", 404)
    TokenStore(_svc().db).revoke(token_id)
    return Response(status=204)


# -- the operator console (provider/console) -----------------------------------------------------


@bp.post("/api/console/ticket")
def console_ticket() -> Response:
    """A short-lived ticket for ``GET /api/console/events`` (EventSource sends no headers)."""
    token = request.headers.get("Authorization", "").partition(" ")[2].strip()
    return jsonify(ticket=TokenStore(_svc().db).ticket(token), expiresIn=TICKET_SECONDS)


@bp.post("/api/jobs/<job_id>/stop")
def stop_job(job_id: str) -> Response:
    """Admin stop: any job, whoever owns it; it ends at 7 (stopped) as an owner's stop does,
    with the reason ``stopped by the operator``."""
    engine = getattr(_svc(), "engine", None)
    if engine is None or not hasattr(engine, "stop"):
        raise AdminError("this provider runs no engine", 409)
    try:
        job = engine.stop(job_id, reason="stopped by the operator")
    except JobNotFound:
        raise AdminError(f"job {job_id!r} not found", 404) from None
    return jsonify(jobId=job.job_id, status=int(job.status), reason=job.reason)
