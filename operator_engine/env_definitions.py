"""Compute environment definitions: one environment's JSON (from the environments file or the
store) parsed and validated into a :class:`~operator_engine.models.ComputeEnvironment`.

Every error is an :class:`EnvironmentConfigError` whose message names the source and the field.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml

from operator_engine.backends.base import PLATFORMS
from operator_engine.models import (
    RESOURCE_IDS,
    ZERO_ADDRESS,
    ComputeEnvironment,
    EgressPolicy,
    FreeTier,
)

DEFAULT_ENV_ID = "tidewater-free"

#: file key -> (ComputeEnvironment field, type, minimum)
_FIELDS: dict[str, tuple[str, type, float | None]] = {
    "description": ("description", str, None),
    "desc": ("description", str, None),
    "cpuNumber": ("cpu_number", int, 1),
    "cpuType": ("cpu_type", str, None),
    "ramGB": ("ram_gb", float, 0.0625),
    "diskGB": ("disk_gb", float, 0.001),
    "gpuNumber": ("gpu_number", int, 0),
    "gpuType": ("gpu_type", str, None),
    "maxJobs": ("max_jobs", int, 1),
    "maxJobDuration": ("max_job_duration", int, 1),
    "storageExpiry": ("storage_expiry", int, 0),
    "priceMin": ("price_min", float, 0),
    "feeToken": ("fee_token", str, None),
    "consumerAddress": ("consumer_address", str, None),
    "minJobDuration": ("min_job_duration", int, 0),
}

#: free-tier key -> (FreeTier field, type, minimum)
_FREE_FIELDS: dict[str, tuple[str, type, float | None]] = {
    "maxJobDuration": ("max_job_duration", int, 1),
    "maxJobs": ("max_jobs", int, 1),
    "cpuNumber": ("cpu_number", int, 1),
    "ramGB": ("ram_gb", float, 0.0625),
    "diskGB": ("disk_gb", float, 0.001),
}


class EnvironmentConfigError(ValueError):
    """A malformed environment definition; the message names the source and the field."""


def default_environment() -> ComputeEnvironment:
    """The built-in free environment used when no environments file is configured."""
    return ComputeEnvironment(
        id=DEFAULT_ENV_ID,
        description="Free environment: 1 CPU, 1 GB RAM, 10 minutes per job",
        cpu_number=1,
        ram_gb=1.0,
        disk_gb=2.0,
        max_jobs=2,
        max_job_duration=600,
        storage_expiry=7 * 24 * 3600,
        price_min=0.0,
        fee_token=ZERO_ADDRESS,  # the FeeTokenRule makes it the chain's Ocean token
        egress=EgressPolicy(max_bytes=256 * 1024**2, max_files=100),
    )


def _number(source: str, key: str, value: Any, kind: type, minimum: float | None) -> Any:
    if kind is str:
        if not isinstance(value, str):
            raise EnvironmentConfigError(f"{source}: {key} must be a string")
        return value
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise EnvironmentConfigError(f"{source}: {key} must be a number, got {value!r}")
    if kind is int and float(value) != int(value):
        raise EnvironmentConfigError(f"{source}: {key} must be a whole number, got {value!r}")
    number = kind(value)
    if minimum is not None and number < minimum:
        raise EnvironmentConfigError(f"{source}: {key} must be at least {minimum}, got {value!r}")
    return number


def parse_environment(data: Any, source: str) -> ComputeEnvironment:
    """One environment from its Ocean-style mapping; ``source`` names it in errors."""
    if not isinstance(data, dict):
        raise EnvironmentConfigError(f"{source}: an environment must be a mapping")
    env_id = data.get("id")
    if not isinstance(env_id, str) or not env_id.strip():
        raise EnvironmentConfigError(f"{source}: id is missing (a non-empty string)")
    where = f"{source} (environment {env_id!r})"
    values: dict[str, Any] = {"id": env_id}
    for key, value in data.items():
        if key == "id":
            continue
        if key == "gpuDevices":
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise EnvironmentConfigError(f"{where}: gpuDevices must be a list of strings")
            values["gpu_devices"] = tuple(value)
        elif key == "allowedImages":
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise EnvironmentConfigError(f"{where}: allowedImages must be a list of strings")
            values["allowed_images"] = tuple(value)
        elif key == "egress":
            values["egress"] = _egress(value, where)
        elif key == "feeToken" and isinstance(value, dict):
            values["fee_tokens"] = _fee_tokens(value, where)
        elif key == "prices":
            values["prices"] = _prices(value, where)
        elif key == "free":
            values["free"] = _free(value, where)
        elif key == "environment":
            values["container_env"] = container_env(value, where)
        elif key == "platform":
            if value not in PLATFORMS:
                raise EnvironmentConfigError(f"{where}: platform must be one of {list(PLATFORMS)}")
            values["platform"] = value
        elif key == "credentialsId":
            if not isinstance(value, str):
                raise EnvironmentConfigError(f"{where}: credentialsId must be a string")
            values["credentials_id"] = value
        elif key in _FIELDS:
            name, kind, minimum = _FIELDS[key]
            values[name] = _number(where, key, value, kind, minimum)
        else:
            raise EnvironmentConfigError(f"{where}: unknown field {key!r}")
    if "prices" in values:
        if "price_min" in values:
            raise EnvironmentConfigError(f"{where}: give prices or priceMin, not both")
        env = ComputeEnvironment(**values)
        values["price_min"] = float(sum(env.price_of(r) * a for r, a in job_amounts(env)))
    return ComputeEnvironment(**values)


def _fee_tokens(value: dict[Any, Any], where: str) -> tuple[tuple[int, str], ...]:
    """``feeToken`` as an object chain id → token address (one fee token per chain)."""
    pairs = []
    for key, token in value.items():
        text = str(key).strip()
        if not (text.isascii() and text.isdigit()):
            raise EnvironmentConfigError(f"{where}: feeToken key {key!r} is not a chain id")
        if not isinstance(token, str):
            raise EnvironmentConfigError(f"{where}: feeToken for chain {text} must be a string")
        pairs.append((int(text), token))
    if not pairs:
        raise EnvironmentConfigError(f"{where}: feeToken must name at least one chain")
    return tuple(pairs)


def _prices(value: Any, where: str) -> tuple[tuple[str, float], ...]:
    if not isinstance(value, dict):
        raise EnvironmentConfigError(f"{where}: prices must be a mapping {{cpu, ram, disk}}")
    unknown = set(value) - set(RESOURCE_IDS)
    if unknown:
        raise EnvironmentConfigError(f"{where}: unknown resource in prices {sorted(unknown)[0]!r}")
    return tuple(
        (r, float(_number(where, f"prices.{r}", value[r], float, 0)))
        for r in RESOURCE_IDS
        if r in value
    )


def _free(value: Any, where: str) -> FreeTier:
    if not isinstance(value, dict):
        raise EnvironmentConfigError(f"{where}: free must be a mapping")
    fields: dict[str, Any] = {}
    for key, item in value.items():
        if key == "requireOrders":
            if not isinstance(item, bool):
                raise EnvironmentConfigError(f"{where}: free.requireOrders must be true or false")
            fields["require_orders"] = item
        elif key in _FREE_FIELDS:
            name, kind, minimum = _FREE_FIELDS[key]
            fields[name] = _number(where, f"free.{key}", item, kind, minimum)
        else:
            raise EnvironmentConfigError(f"{where}: unknown free-tier field {key!r}")
    return FreeTier(**fields)


def job_amounts(env: ComputeEnvironment) -> list[tuple[str, float]]:
    """What one job of ``env`` gets, in C2D v2 units: (cpu, CPUs), (ram, GB), (disk, GB)."""
    jobs = max(env.max_jobs, 1)
    return [
        ("cpu", env.cpu_number / jobs),
        ("ram", env.ram_gb / jobs),
        ("disk", env.disk_gb / jobs),
    ]


#: variables the engine sets for every algorithm; an environment may not override them
RESERVED_VARIABLES = frozenset(
    {"DIDS", "TRANSFORMATION_DID", "VOLUME", "INPUTS", "OUTPUTS", "LOGS", "secret"}
)
_VAR_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")


def container_env(value: Any, where: str) -> tuple[tuple[str, str], ...]:
    """Algorithm environment variables from ``[{name, value}]`` (the admin document's shape)
    or a ``{name: value}`` mapping.

    >>> container_env([{"name": "MODE", "value": "fast", "compute": True}], "x")
    (('MODE', 'fast'),)
    """
    if isinstance(value, dict):
        items = [{"name": k, "value": v} for k, v in value.items()]
    elif isinstance(value, list):
        items = value
    else:
        raise EnvironmentConfigError(f"{where}: environment must be a list of {{name, value}}")
    out: dict[str, str] = {}
    for item in items:
        if not isinstance(item, dict) or set(item) - {"name", "value", "head", "compute"}:
            raise EnvironmentConfigError(f"{where}: environment items are {{name, value}}")
        name, text = item.get("name"), item.get("value")
        if not isinstance(name, str) or not _VAR_RE.match(name):
            raise EnvironmentConfigError(f"{where}: environment name {name!r} is not a variable")
        if name in RESERVED_VARIABLES:
            raise EnvironmentConfigError(f"{where}: environment {name} is set by the engine")
        if not isinstance(text, str):
            raise EnvironmentConfigError(f"{where}: environment {name} value must be a string")
        if item.get("compute") is False:
            continue  # a head-only variable: tidewater has no head job, so it has no effect
        out[name] = text
    return tuple(out.items())


def _egress(value: Any, where: str) -> EgressPolicy:
    if not isinstance(value, dict):
        raise EnvironmentConfigError(f"{where}: egress must be a mapping {{maxBytes, maxFiles}}")
    unknown = set(value) - {"maxBytes", "maxFiles"}
    if unknown:
        raise EnvironmentConfigError(f"{where}: unknown egress field {sorted(unknown)[0]!r}")
    default = EgressPolicy()
    return EgressPolicy(
        max_bytes=_number(
            where, "egress.maxBytes", value.get("maxBytes", default.max_bytes), int, 0
        ),
        max_files=_number(
            where, "egress.maxFiles", value.get("maxFiles", default.max_files), int, 0
        ),
    )


def load_file(path: Path) -> list[ComputeEnvironment]:
    """Parse an environments file (JSON, or YAML by suffix): a list or {environments: [...]}."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise EnvironmentConfigError(
            f"{path}: cannot read environments file ({exc.strerror})"
        ) from None
    try:
        if path.suffix.lower() in (".yaml", ".yml"):
            data = yaml.safe_load(text)
        else:
            data = json.loads(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise EnvironmentConfigError(
            f"{path}: not valid {path.suffix[1:] or 'JSON'}: {exc}"
        ) from None
    if isinstance(data, dict) and "environments" in data:
        data = data["environments"]
    if not isinstance(data, list) or not data:
        raise EnvironmentConfigError(f"{path}: expected a non-empty list of environments")
    envs = [parse_environment(item, f"{path}[{i}]") for i, item in enumerate(data)]
    seen: set[str] = set()
    for env in envs:
        if env.id in seen:
            raise EnvironmentConfigError(f"{path}: environment id {env.id!r} appears twice")
        seen.add(env.id)
    return envs
