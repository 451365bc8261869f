"""Compute environments: read from a JSON/YAML file and from the store, fresh each time
(parsing one definition: :mod:`operator_engine.env_definitions`), and their fee-token rule.

File environments are read-only; store-managed ones (``compute_envs``, written by the admin
API) take effect at the next scheduling decision. An environment in status ``DELETING`` is
draining: it accepts no new jobs, its queued and running ones finish, then the sweep deletes it.

Resources: ``cpuNumber``, ``ramGB`` and ``diskGB`` are what the environment may use in total;
each of its at most ``maxJobs`` concurrent jobs gets an equal share, so running jobs together
never exceed what the environment declares.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from eth_utils.address import to_checksum_address

from operator_engine.credentials import CredentialStore
from operator_engine.env_definitions import (
    DEFAULT_ENV_ID,
    RESERVED_VARIABLES,
    EnvironmentConfigError,
    container_env,
    default_environment,
    job_amounts,
    load_file,
    parse_environment,
)
from operator_engine.lifecycle import EnvState
from operator_engine.models import ComputeEnvironment

#: Definitions parsing lives in env_definitions; these names stay importable from here.
__all__ = [
    "DEFAULT_ENV_ID",
    "FREE_SUFFIX",
    "RESERVED_VARIABLES",
    "ChainFeeTokens",
    "EnvEntry",
    "EnvironmentConfigError",
    "EnvironmentRegistry",
    "FeeTokenRule",
    "FeeTokenUnchecked",
    "container_env",
    "default_environment",
    "free_tier_environment",
    "gpu_share",
    "job_amounts",
    "job_share",
    "load_file",
    "parse_environment",
]

#: Separates an environment's id from the suffix of its free tier's engine-side environment.
FREE_SUFFIX = ":free"


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
    With ``platform_unavailable`` (the engine's backends), an environment whose platform has no
    backend is INVALID (listed with why, never offered nor scheduled).
    """

    def __init__(
        self,
        path: Path | None,
        store: Any,
        fee_tokens: FeeTokenRule | ChainFeeTokens | None = None,
        platform_unavailable: Callable[[str], str | None] | None = None,
    ) -> None:
        self.path = path
        self.store = store
        self.fee_tokens = fee_tokens
        self.platform_unavailable = platform_unavailable

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
                config = {"id": row.id, **dict(row.config), "platform": row.platform}
                env = self.check(parse_environment(config, where), where)
            except EnvironmentConfigError as exc:
                bare = ComputeEnvironment(id=row.id, platform=str(row.platform))
                merged[row.id] = EnvEntry(bare, EnvState.INVALID, row.source, str(exc))
                continue
            status, message = EnvState(row.status), row.message
            if env.credentials_id and not self._credentials_exist(env.credentials_id):
                status, message = (
                    EnvState.INVALID,
                    f"credentials {env.credentials_id!r} do not exist",
                )
            merged[row.id] = EnvEntry(env, status, row.source, message)
        self._mark_unavailable(merged)
        for entry in list(merged.values()):
            free = free_tier_environment(entry.env)
            if free is not None and free.id not in merged:
                merged[free.id] = EnvEntry(free, entry.status, entry.source, entry.message)
        primary = self.primary_id(merged)
        if primary is None:
            return merged
        first = replace(merged.pop(primary), primary=True)
        return {primary: first, **merged}

    def _mark_unavailable(self, merged: dict[str, EnvEntry]) -> None:
        if self.platform_unavailable is None:
            return
        for env_id, entry in merged.items():
            why = self.platform_unavailable(entry.env.platform)
            if why is not None and entry.status is not EnvState.INVALID:
                message = f"platform {entry.env.platform}: {why}"
                merged[env_id] = replace(entry, status=EnvState.INVALID, message=message)

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
