"""Compute environments: parsed from a JSON/YAML file and from the store, read fresh each time.

File environments are read-only; store-managed ones (``compute_envs``, written by the admin
API) take effect at the next scheduling decision. An environment in status ``DELETING`` is
draining: it accepts no new jobs, its queued and running ones finish, then the sweep deletes it.

Resources: ``cpuNumber``, ``ramGB`` and ``diskGB`` are what the environment may use in total;
each of its at most ``maxJobs`` concurrent jobs gets an equal share, so running jobs together
never exceed what the environment declares.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import yaml
from eth_utils import to_checksum_address

from operator_engine.credentials import CredentialStore
from operator_engine.lifecycle import EnvState
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

#: Separates an environment's id from the suffix of its free tier's engine-side environment.
FREE_SUFFIX = ":free"

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


class FeeTokenUnchecked(EnvironmentConfigError):
    """The chain did not answer the fee token's code check (nothing is known either way)."""


_ADDRESS_RE = re.compile(r"^0x[0-9a-fA-F]{40}$")


class FeeTokenRule:
    """The one rule for an environment's fee token, applied whenever environments are loaded.

    A fee token is always a real ERC-20 on the chain: ocean.js calls ``allowance``/``approve``
    on it even for a zero fee, and a call to an address without code reverts. An environment
    that names no fee token (or the zero address) gets ``default_token``, the Ocean token of the
    chain's address-file entry; a token that is malformed or has no code on the chain refuses
    the environment with :class:`EnvironmentConfigError`. ``get_code`` is ``web3.eth.get_code``
    of the chain (code checks are cached: found for good, missing for ``retry_seconds``). With
    ``chain_id``, a per-chain ``feeToken`` (an object chain id → token) is read for that chain.
    """

    def __init__(
        self,
        default_token: str | None,
        get_code: Callable[[str], bytes],
        chain: str,
        *,
        retry_seconds: float = 30.0,
        chain_id: int | None = None,
    ) -> None:
        self.chain_id = chain_id
        self.default_token = default_token
        self.get_code = get_code
        self.chain = chain
        self.retry_seconds = retry_seconds
        self._found: set[str] = set()
        self._missing: dict[str, float] = {}
        self._lock = threading.Lock()

    def token_for(self, configured: str | None, where: str) -> str:
        """The checksummed fee token an environment configured with ``configured`` uses."""
        token = configured or ""
        if not token or (_ADDRESS_RE.match(token) and int(token, 16) == 0):
            if not self.default_token:
                raise EnvironmentConfigError(
                    f"{where}: no feeToken, and the address file has no Ocean token for "
                    f"{self.chain} to default to: set feeToken to an ERC-20 on {self.chain}"
                )
            token = self.default_token
        if not _ADDRESS_RE.match(token):
            raise EnvironmentConfigError(
                f"{where}: feeToken {token!r} is not an address (0x and 40 hex digits)"
            )
        token = to_checksum_address(token)
        if not self._has_code(token, where):
            raise EnvironmentConfigError(
                f"{where}: feeToken {token} has no contract code on {self.chain}: "
                "name an ERC-20 deployed there, or omit feeToken to use the chain's Ocean token"
            )
        return token

    def apply(self, env: ComputeEnvironment, where: str) -> ComputeEnvironment:
        """``env`` with its fee token resolved and checked (see :meth:`token_for`)."""
        if self.chain_id is not None:
            env = env.on_chain(self.chain_id)
        return replace(env, fee_token=self.token_for(env.fee_token, where))

    def _has_code(self, token: str, where: str) -> bool:
        with self._lock:
            if token in self._found:
                return True
            missing_since = self._missing.get(token)
            if missing_since is not None and time.monotonic() - missing_since < self.retry_seconds:
                return False
        try:
            found = len(self.get_code(token)) > 0
        except Exception as exc:  # transport errors: say so, remember nothing
            raise FeeTokenUnchecked(
                f"{where}: cannot check feeToken {token} on {self.chain} ({type(exc).__name__})"
            ) from None
        with self._lock:
            if found:
                self._found.add(token)
                self._missing.pop(token, None)
            else:
                self._missing[token] = time.monotonic()
        return found


class ChainFeeTokens:
    """The fee-token rules of a provider serving several chains, as one registry rule.

    :meth:`apply` checks an environment on every chain (a chain that does not answer is
    skipped: it is checked when that chain offers the environment) and returns it as
    configured, since its fee token differs per chain: each chain resolves its own with its
    :class:`FeeTokenRule` when it offers the environment.
    """

    def __init__(self, rules: dict[int, FeeTokenRule]) -> None:
        self.rules = rules

    def apply(self, env: ComputeEnvironment, where: str) -> ComputeEnvironment:
        for rule in self.rules.values():
            try:
                rule.apply(env, f"{where} on {rule.chain}")
            except FeeTokenUnchecked:
                continue
        return env


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


def free_tier_environment(env: ComputeEnvironment) -> ComputeEnvironment | None:
    """The engine-side environment that runs ``env``'s free jobs (id ``<env>:free``): the free
    tier's own resources, duration and concurrency, at no price. None without a free tier."""
    if env.free is None:
        return None
    tier = env.free
    return ComputeEnvironment(
        id=env.id + FREE_SUFFIX,
        description=f"free tier of {env.id}",
        cpu_number=tier.cpu_number,
        cpu_type=env.cpu_type,
        ram_gb=tier.ram_gb,
        disk_gb=tier.disk_gb,
        max_jobs=tier.max_jobs,
        max_job_duration=tier.max_job_duration,
        storage_expiry=env.storage_expiry,
        price_min=0.0,
        fee_token=env.fee_token,
        consumer_address=env.consumer_address,
        allowed_images=env.allowed_images,
        egress=env.egress,
        container_env=env.container_env,
        credentials_id=env.credentials_id,
        free_of=env.id,
    )


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


@dataclass(frozen=True)
class EnvEntry:
    """An environment with where it comes from and whether it takes jobs."""

    env: ComputeEnvironment
    status: EnvState = EnvState.AVAILABLE
    source: str = "file"
    message: str | None = None
    primary: bool = False

    @property
    def accepts_jobs(self) -> bool:
        return self.status.accepts_jobs

    @property
    def schedulable(self) -> bool:
        """Queued jobs run in AVAILABLE and draining (DELETING) environments."""
        return self.status.schedulable


class EnvironmentRegistry:
    """File environments merged with store-managed ones; :meth:`entries` reads both afresh.

    With a :class:`FeeTokenRule` (the provider installs one) every environment's fee token is
    resolved and checked: a file environment that fails raises, a store one becomes INVALID.
    """

    def __init__(
        self,
        path: Path | None,
        store: Any,
        fee_tokens: FeeTokenRule | ChainFeeTokens | None = None,
    ) -> None:
        self.path = path
        self.store = store
        self.fee_tokens = fee_tokens

    def check(self, env: ComputeEnvironment, where: str) -> ComputeEnvironment:
        """``env`` as offered: fee token resolved and checked when a rule is installed."""
        return env if self.fee_tokens is None else self.fee_tokens.apply(env, where)

    def file_envs(self) -> list[ComputeEnvironment]:
        if self.path is None:
            return [self.check(default_environment(), "built-in environment")]
        return [self.check(env, f"{self.path} ({env.id!r})") for env in load_file(self.path)]

    def entries(self) -> dict[str, EnvEntry]:
        """Every environment, the primary one first (see :meth:`primary_id`)."""
        merged = {env.id: EnvEntry(env) for env in self.file_envs()}
        for row in self.store.environments.rows():
            if row.id in merged and merged[row.id].source == "file":
                continue  # a file environment is read-only: the API cannot shadow it
            where = f"compute_envs[{row.id}]"
            try:
                env = self.check(
                    parse_environment({"id": row.id, **dict(row.config)}, where), where
                )
            except EnvironmentConfigError as exc:
                merged[row.id] = EnvEntry(
                    ComputeEnvironment(id=row.id), EnvState.INVALID, row.source, str(exc)
                )
                continue
            status, message = EnvState(row.status), row.message
            if env.credentials_id and not self._credentials_exist(env.credentials_id):
                status, message = (
                    EnvState.INVALID,
                    f"credentials {env.credentials_id!r} do not exist",
                )
            merged[row.id] = EnvEntry(env, status, row.source, message)
        for entry in list(merged.values()):
            free = free_tier_environment(entry.env)
            if free is not None and free.id not in merged:
                merged[free.id] = EnvEntry(free, entry.status, entry.source, entry.message)
        primary = self.primary_id(merged)
        if primary is None:
            return merged
        first = replace(merged.pop(primary), primary=True)
        return {primary: first, **merged}

    def primary_id(self, entries: dict[str, EnvEntry]) -> str | None:
        """The environment a job or admin call that names none uses: the one flagged primary
        while it exists and takes jobs, else the first that takes jobs (file order first)."""
        flagged = self.store.environments.primary()
        if flagged in entries and entries[flagged].accepts_jobs:
            return str(flagged)
        return next(
            (i for i, e in entries.items() if e.accepts_jobs and e.env.free_of is None), None
        )

    def _credentials_exist(self, credentials_id: str) -> bool:
        return CredentialStore(self.store.engine, None).exists(credentials_id)


def job_share(env: ComputeEnvironment) -> tuple[float, int, int]:
    """(CPUs, RAM bytes, disk bytes) one job of ``env`` may use."""
    jobs = max(env.max_jobs, 1)
    return (
        env.cpu_number / jobs,
        int(env.ram_gb * 1024**3 / jobs),
        int(env.disk_gb * 1024**3 / jobs),
    )


def gpu_share(env: ComputeEnvironment) -> tuple[int, tuple[str, ...]]:
    """(GPU count, explicit device ids) one job of ``env`` is given: its ``gpuDevices`` when
    listed, else ``gpuNumber / maxJobs`` (at least 1 when the environment has GPUs).

    >>> from operator_engine.models import ComputeEnvironment as E
    >>> gpu_share(E("a", gpu_number=4, max_jobs=2)), gpu_share(E("b"))
    ((2, ()), (0, ()))
    """
    if env.gpu_devices:
        return len(env.gpu_devices), env.gpu_devices
    if env.gpu_number <= 0:
        return 0, ()
    return max(1, env.gpu_number // max(env.max_jobs, 1)), ()
