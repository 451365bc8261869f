"""Compute environments as managed resources: request validation and the Tower-style views.

API-managed environments live in the store's ``compute_envs`` table; file environments (and the
built-in default) are listed too but are read-only. The engine's registry reads the table at
each scheduling decision, so a change here takes effect without a restart.
"""

from __future__ import annotations

import re
from datetime import UTC
from typing import Any

from datastore.environments import EnvironmentRepository
from datastore.jobs import JobStore
from operator_engine.backends.base import (
    DEFAULT_PLATFORM,
    PLATFORMS,
    BackendError,
    BackendRegistry,
)
from operator_engine.credentials import CredentialStore
from operator_engine.environments import (
    EnvEntry,
    EnvironmentConfigError,
    EnvironmentRegistry,
    FeeTokenUnchecked,
    parse_environment,
)
from operator_engine.lifecycle import EnvState, finish_drains
from operator_engine.models import FreeTier
from provider.errors import AdminError

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
#: API config key -> environments-file key (others pass through unchanged)
_ALIASES = {"cpu": "cpuNumber", "gpu": "gpuNumber"}


def iso(moment: Any) -> str | None:
    """ISO-8601 in UTC with a ``Z`` suffix, as the admin documents write dates.

    >>> from datetime import datetime, UTC
    >>> iso(datetime(2020, 11, 11, 9, 37, 40, 5, tzinfo=UTC))
    '2020-11-11T09:37:40Z'
    """
    if moment is None:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return str(moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"))


#: document config fields tidewater cannot honour, with the reason given when one is sent
_REFUSED_CONFIG = {
    "workDir": "job data lives in TIDEWATER_DATA_DIR/jobs/<id> (0700, deleted at expiry); "
    "a per-environment work directory is not supported",
    "preRunScript": "algorithms run sealed in their container; a script on the host would run "
    "outside the sandbox (put set-up in the algorithm or its image)",
    "postRunScript": "algorithms run sealed in their container; a script on the host would run "
    "outside the sandbox (post-process in the algorithm)",
    "region": "applies to cloud platforms (aws-batch…); tidewater runs on docker or kubernetes",
    "forge": "applies to aws-batch; tidewater runs on docker or kubernetes",
}


def env_id_of(name: Any) -> str:
    """The environment id consumers use, made from its name: runs of characters other than
    letters, digits, ``.``, ``_`` and ``-`` become one ``-``. Raises 400 when nothing is left.

    >>> env_id_of("AWS Default Environment"), env_id_of("gpu-large")
    ('AWS-Default-Environment', 'gpu-large')
    """
    if not isinstance(name, str) or not name.strip() or len(name) > 100:
        raise AdminError("computeEnv.name: required, 1-100 characters")
    env_id = re.sub(r"[^A-Za-z0-9._-]+", "-", name.strip()).strip("-._")
    if not _NAME_RE.match(env_id):
        raise AdminError(
            f"computeEnv.name: {name!r} has no letters or digits to make an environment id from"
        )
    return env_id


def parse_body(body: Any, env_id: str) -> dict[str, Any]:
    """Validate a ``{"computeEnv": {...}}`` body; the column values to store (plus
    ``primary`` and ``credentialsId``). Raises 400 naming the field."""
    if not isinstance(body, dict) or not isinstance(body.get("computeEnv"), dict):
        raise AdminError('body must be a JSON object {"computeEnv": {...}}')
    spec = body["computeEnv"]
    unknown = set(spec) - {
        "name",
        "description",
        "platform",
        "config",
        "credentialsId",
        "primary",
    }
    if unknown:
        raise AdminError(f"computeEnv.{sorted(unknown)[0]}: unknown field")
    name = spec["name"] if env_id_of(spec.get("name")) else ""
    description = spec.get("description", "")
    if not isinstance(description, str):
        raise AdminError("computeEnv.description: must be a string")
    platform = spec.get("platform", DEFAULT_PLATFORM)
    if platform not in PLATFORMS:
        raise AdminError(f"computeEnv.platform: must be one of {list(PLATFORMS)}")
    config = spec.get("config")
    if not isinstance(config, dict):
        raise AdminError("computeEnv.config: required, an object")
    refused = [
        f"computeEnv.config.{k}: not supported: {_REFUSED_CONFIG[k]}"
        for k in config
        if k in _REFUSED_CONFIG
    ]
    if refused:
        raise AdminError("; ".join(sorted(refused)))
    primary = spec.get("primary", False)
    if not isinstance(primary, bool):
        raise AdminError("computeEnv.primary: must be true or false")
    credentials_id = spec.get("credentialsId")
    if credentials_id is not None and not isinstance(credentials_id, str):
        raise AdminError("computeEnv.credentialsId: must be a string")
    stored = {_ALIASES.get(k, k): v for k, v in config.items()}
    if credentials_id:
        stored["credentialsId"] = credentials_id
    if "description" not in stored and description:
        stored["description"] = description
    try:
        parse_environment({"id": env_id, **stored}, "computeEnv.config")
    except EnvironmentConfigError as exc:
        raise AdminError(str(exc)) from None
    return {
        "name": name,
        "description": description,
        "platform": platform,
        "config": stored,
        "primary": primary,
    }


class EnvAdmin:
    """Environment operations over the store and the merged registry."""

    def __init__(
        self,
        store: JobStore,
        registry: EnvironmentRegistry,
        backends: BackendRegistry | None = None,
        credentials: CredentialStore | None = None,
    ) -> None:
        self.store = store
        self.registry = registry
        self.backends = backends
        self.credentials = credentials or CredentialStore(store.engine, None)

    def platforms(self) -> list[str]:
        """The platforms environments can be created on here (those with a backend)."""
        backends = self.backends
        return [p for p in PLATFORMS if backends is None or backends.unavailable(p) is None]

    def check_platform(self, platform: str) -> None:
        """400 when this provider has no backend for ``platform``."""
        why = self.backends.unavailable(platform) if self.backends is not None else None
        if why is not None:
            raise AdminError(f"computeEnv.platform: {platform} cannot run jobs here: {why}")

    def health(
        self, config: dict[str, Any], platform: str = DEFAULT_PLATFORM
    ) -> tuple[EnvState, str | None]:
        """(status, message) for a config: ERRORED when an allowed image cannot be resolved
        (which also covers the backend being unreachable), else AVAILABLE."""
        if self.backends is None:
            return EnvState.AVAILABLE, None
        try:
            backend = self.backends.get(platform)
        except BackendError as exc:
            return EnvState.ERRORED, f"platform: {exc}"
        wants_gpus = bool(config.get("gpuDevices")) or (config.get("gpuNumber") or 0) > 0
        reason = backend.gpu_support() if wants_gpus else None
        if reason is not None:
            return EnvState.ERRORED, f"gpuNumber: {reason}"
        for ref in config.get("allowedImages") or ():
            name, _, tag = ref.partition(":")
            try:
                backend.resolve_image(name, tag or None, None)
            except BackendError as exc:
                return EnvState.ERRORED, f"allowedImages: {ref}: {exc}"
        return EnvState.AVAILABLE, None

    def check_fee_token(self, env_id: str, config: dict[str, Any]) -> None:
        """400 unless the config's fee token (or the default) is an ERC-20 on the chain; 503
        when the chain does not answer the check."""
        where = "computeEnv.config"
        try:
            self.registry.check(parse_environment({"id": env_id, **config}, where), where)
        except FeeTokenUnchecked as exc:
            raise AdminError(str(exc), 503) from None
        except EnvironmentConfigError as exc:
            raise AdminError(str(exc)) from None

    def last_used(self) -> dict[str, Any]:
        """The newest job creation time per environment."""
        return self.store.newest_per_environment()

    def rows(self) -> dict[str, Any]:
        return {row.id: row for row in self.store.environments.rows()}

    def entries(self) -> dict[str, EnvEntry]:
        """The merged registry, after deleting drained environments (the engine's sweep does
        the same; doing it here too makes "gone once drained" visible at once)."""
        self.finish_drains()
        try:
            return self.registry.entries()
        except FeeTokenUnchecked as exc:
            raise AdminError(str(exc), 503) from None
        except EnvironmentConfigError as exc:
            raise AdminError(f"environments file: {exc}", 500) from None

    def _summary(self, entry: EnvEntry, row: Any | None, used: Any = None) -> dict[str, Any]:
        last = row.last_used if row is not None and row.last_used is not None else used
        return {
            "id": entry.env.id,
            "name": row.name if row is not None else entry.env.id,
            "platform": entry.env.platform,
            "status": entry.status,
            "message": entry.message,
            "lastUsed": iso(last),
            "primary": entry.primary,
            "source": entry.source,
        }

    def summaries(self) -> list[dict[str, Any]]:
        rows, used = self.rows(), self.last_used()
        return [self._summary(e, rows.get(i), used.get(i)) for i, e in self.entries().items()]

    def entry(self, env_id: str) -> EnvEntry:
        entry = self.entries().get(env_id)
        if entry is None:
            raise AdminError(f"compute environment {env_id!r} not found", 404)
        return entry

    def describe(self, env_id: str) -> dict[str, Any]:
        entry = self.entry(env_id)
        row = self.rows().get(env_id)
        summary = self._summary(entry, row, self.last_used().get(env_id))
        config = dict(row.config) if row is not None else _file_config(entry)
        config.pop("credentialsId", None)
        credentials_id = entry.env.credentials_id or None
        return {
            "computeEnv": {
                **summary,
                "description": row.description if row is not None else entry.env.description,
                "config": config,
                "credentialsId": credentials_id,
            },
            "dateCreated": iso(row.date_created) if row is not None else None,
            "lastUpdated": iso(row.last_updated) if row is not None else None,
            "lastUsed": summary["lastUsed"],
            "deleted": entry.status is EnvState.DELETING,
            "status": summary["status"],
            "message": summary["message"],
            "primary": summary["primary"],
            "credentialsId": credentials_id,
        }

    def managed(self, env_id: str) -> Any:
        """The store row of an API-managed environment; 404 unknown, 403 file-defined."""
        entry = self.entry(env_id)
        row = self.rows().get(env_id)
        if row is None or entry.source != "api":
            raise AdminError(
                f"compute environment {env_id!r} comes from TIDEWATER_ENVIRONMENTS and is "
                "read-only: edit the file and restart instead",
                403,
            )
        return row

    def check_name(self, name: Any) -> None:
        """``GET …/validate``: 400 malformed, 409 taken, else nothing (204)."""
        env_id = env_id_of(name)
        if env_id in self.entries():
            raise AdminError(f"computeEnv.name: environment {env_id!r} exists", 409)

    def _check_credentials(self, config: dict[str, Any]) -> None:
        cred_id = config.get("credentialsId")
        if cred_id and not self.credentials.exists(cred_id):
            raise AdminError(f"computeEnv.credentialsId: credentials {cred_id!r} do not exist")

    def create(self, body: Any) -> str:
        """Create: stored as CREATING while its images are checked, then AVAILABLE or
        ERRORED. 409 when the name is taken."""
        if not isinstance(body, dict) or not isinstance(body.get("computeEnv"), dict):
            raise AdminError('body must be a JSON object {"computeEnv": {...}}')
        env_id = env_id_of(body["computeEnv"].get("name"))
        values = parse_body(body, env_id)
        if env_id in self.entries():
            raise AdminError(f"computeEnv.name: an environment named {env_id!r} exists", 409)
        config, primary = values.pop("config"), values.pop("primary")
        self.check_platform(values["platform"])
        self._check_credentials(config)
        self.check_fee_token(env_id, config)
        self.store.environments.put(
            env_id, config, status=EnvState.CREATING, source="api", **values
        )
        status, message = self.health(config, values["platform"])
        self.store.environments.put(env_id, config, status=status, message=message)
        if primary:
            self.store.environments.set_primary(env_id)
        return env_id

    def update(self, env_id: str, body: Any) -> None:
        row = self.managed(env_id)
        if row.status == EnvState.DELETING:
            raise AdminError(f"compute environment {env_id!r} is being deleted")
        values = parse_body(body, env_id)
        config, primary = values.pop("config"), values.pop("primary")
        self.check_platform(values["platform"])
        self._check_credentials(config)
        self.check_fee_token(env_id, config)
        status, message = self.health(config, values["platform"])
        self.store.environments.put(env_id, config, status=status, message=message, **values)
        if primary:
            self.store.environments.set_primary(env_id)

    def make_primary(self, env_id: str) -> None:
        """Flag ``env_id`` (file-defined or API-managed) as the primary environment."""
        entry = self.entry(env_id)
        if not entry.accepts_jobs:
            raise AdminError(f"compute environment {env_id!r} takes no jobs ({entry.status})")
        self.store.environments.set_primary(env_id)

    def delete(self, env_id: str, *, drain: bool) -> None:
        """Delete now when idle; with ``drain`` mark DELETING (the engine's sweep deletes it
        once its live jobs end); otherwise refuse while jobs are live."""
        row = self.managed(env_id)
        live = self.store.live_counts().get(env_id, 0)
        if live == 0:
            self.store.environments.delete(env_id)
            return
        if not drain:
            raise AdminError(
                f"compute environment {env_id!r} has {live} live job(s): "
                "retry with ?drain=true to stop accepting jobs and delete when they end"
            )
        EnvironmentRepository(self.store.engine).mark_draining(
            row.id, f"draining: {live} live job(s)"
        )

    def finish_drains(self) -> list[str]:
        """Delete DELETING environments whose jobs have all ended; their ids."""
        return finish_drains(self.store)


def _file_config(entry: EnvEntry) -> dict[str, Any]:
    env = entry.env
    return {
        "cpuNumber": env.cpu_number,
        "ramGB": env.ram_gb,
        "diskGB": env.disk_gb,
        "maxJobs": env.max_jobs,
        "maxJobDuration": env.max_job_duration,
        "storageExpiry": env.storage_expiry,
        "priceMin": env.price_min,
        "feeToken": env.fee_token,
        **({"prices": dict(env.prices)} if env.prices else {}),
        **({"minJobDuration": env.min_job_duration} if env.min_job_duration else {}),
        **({"free": _free_config(env.free)} if env.free is not None else {}),
    }


def _free_config(tier: FreeTier) -> dict[str, Any]:
    return {
        "maxJobDuration": tier.max_job_duration,
        "maxJobs": tier.max_jobs,
        "cpuNumber": tier.cpu_number,
        "ramGB": tier.ram_gb,
        "diskGB": tier.disk_gb,
        "requireOrders": tier.require_orders,
    }
