"""Environments in C2D v2 terms: resources, per-resource prices, free tiers, job costs.

tidewater's environment config is the one source (``operator_engine.environments``): an
environment's per-job share of its CPUs, RAM (GB) and disk (GB) is what one job gets, so each
resource's ``min`` and ``max`` are that share (a request below it is raised to it, above it is
refused) and a job pays for exactly what it runs with. ``prices`` are fee token per unit per
minute; an environment priced only by the V4 ``priceMin`` shows that price on its CPU share. A
free tier runs in its own engine environment ``<id>:free`` with its own resources and limits.
"""

from __future__ import annotations

import math
from decimal import Decimal
from fractions import Fraction
from typing import Any

from operator_engine import billing
from operator_engine.environments import FREE_SUFFIX, job_amounts
from operator_engine.models import RESOURCE_IDS, ZERO_ADDRESS, ComputeEnvironment
from provider.errors import ProviderError, RequestValidationError

#: Seconds a lock outlives the job's longest run: time to publish results and claim.
CLAIM_MARGIN_S = 3600
_UNIX_TIME_FLOOR = 1_000_000_000  # a "duration" this large is a timestamp (ocean.js examples)


def prices(env: ComputeEnvironment) -> dict[str, float]:
    """Fee token per unit per minute of each resource (``priceMin`` lands on the CPU share)."""
    if env.prices:
        return {r: env.price_of(r) for r in RESOURCE_IDS}
    share = dict(job_amounts(env))["cpu"]
    cpu = float(Fraction(Decimal(str(env.price_min))) / Fraction(Decimal(str(share))))
    return {"cpu": cpu, "ram": 0.0, "disk": 0.0}


def is_paid(env: ComputeEnvironment) -> bool:
    return any(p > 0 for p in prices(env).values())


def resources_view(env: ComputeEnvironment, running: int) -> list[dict[str, Any]]:
    """``resources`` of an environment: cpu, ram, disk first, each with total/min/max/inUse."""
    totals = {"cpu": env.cpu_number, "ram": env.ram_gb, "disk": env.disk_gb}
    kinds = {"cpu": "CPUs", "ram": "GB of RAM", "disk": "GB of disk"}
    return [
        {
            "id": rid,
            "type": rid,
            "kind": rid,
            "description": kinds[rid],
            "total": totals[rid],
            "min": share,
            "max": share,
            "inUse": share * running,
        }
        for rid, share in job_amounts(env)
    ]


def environment_view(
    env: ComputeEnvironment,
    free_env: ComputeEnvironment | None,
    live: dict[str, int],
    *,
    chain_id: int,
    consumer_address: str,
) -> dict[str, Any]:
    """One entry of ``GET /node/api/services/computeEnvironments`` (Ocean Node's shape)."""
    running = int(live.get(env.id, 0))
    running_free = int(live.get(free_env.id, 0)) if free_env is not None else 0
    fees: dict[str, Any] = {}
    if is_paid(env) or env.fee_token != ZERO_ADDRESS:
        fees[str(chain_id)] = [
            {
                "feeToken": env.fee_token,
                "prices": [{"id": r, "price": p} for r, p in prices(env).items()],
            }
        ]
    view: dict[str, Any] = {
        "id": env.id,
        "description": env.description,
        "consumerAddress": env.consumer_address or consumer_address,
        "storageExpiry": env.storage_expiry,
        "minJobDuration": env.min_job_duration,
        "maxJobDuration": env.max_job_duration,
        "maxJobs": env.max_jobs,
        "runningJobs": running,
        "runningfreeJobs": running_free,
        "queuedJobs": 0,
        "queuedFreeJobs": 0,
        "fees": fees,
        "resources": resources_view(env, running),
        "platform": {"architecture": "x86_64", "os": "linux"},
    }
    if free_env is not None:
        view["free"] = {
            "storageExpiry": free_env.storage_expiry,
            "maxJobDuration": free_env.max_job_duration,
            "maxJobs": free_env.max_jobs,
            "resources": [
                {"id": r["id"], "max": r["max"], "inUse": r["inUse"]}
                for r in resources_view(free_env, running_free)
            ],
        }
    return view


def public_id(env_id: str) -> str:
    """The id clients know: a free tier's engine environment ``x:free`` is ``x``."""
    return env_id[: -len(FREE_SUFFIX)] if env_id.endswith(FREE_SUFFIX) else env_id


def job_duration(raw: Any, env: ComputeEnvironment) -> int:
    """Seconds a job may run: ``raw`` capped to the environment's ``maxJobDuration``.

    ``raw`` may be missing (the maximum), a number of seconds, or a unix timestamp (ocean.js's
    own examples pass ``validUntil`` there): both are capped. Zero, negative or non-numeric
    values are refused.
    """
    if raw is None or raw == "":
        return env.max_job_duration
    text = getattr(raw, "text", None) or str(raw)
    try:
        value = Decimal(text)
    except ArithmeticError:
        value = Decimal("NaN")
    if isinstance(raw, bool) or not value.is_finite() or value <= 0:
        raise RequestValidationError(
            {"maxJobDuration": ["The maxJobDuration field must be a positive number of seconds."]}
        )
    if value >= _UNIX_TIME_FLOOR:
        return env.max_job_duration
    return max(1, min(int(value), env.max_job_duration))


def requested_resources(env: ComputeEnvironment, raw: Any, field: str) -> dict[str, float]:
    """The amounts a job runs with: each resource the client names must be known and at most
    its ``max``; missing ones (and ones below ``min``) are the share one job gets."""
    share = dict(job_amounts(env))
    if raw is None or raw == "":
        return share
    if not isinstance(raw, list):
        raise RequestValidationError({field: [f"The {field} field must be a list."]})
    for i, item in enumerate(raw):
        if not isinstance(item, dict) or not isinstance(item.get("id"), str):
            raise RequestValidationError({f"{field}[{i}]": ["Each resource needs an id."]})
        rid = item["id"]
        if rid not in share:
            raise ProviderError(f"Unknown resource {rid!r} in environment {env.id}", 400)
        amount = item.get("amount")
        if amount is None:
            continue
        if isinstance(amount, bool) or not isinstance(amount, int | float | str):
            raise RequestValidationError({f"{field}[{i}].amount": ["Must be a number."]})
        try:
            value = float(amount)
        except ValueError:
            raise RequestValidationError({f"{field}[{i}].amount": ["Must be a number."]}) from None
        if not math.isfinite(value) or value > share[rid] + 1e-9:
            raise ProviderError(
                f"Not enough {rid}: {amount} requested, at most {share[rid]:g} per job in "
                f"environment {env.id}",
                400,
            )
    return share


def base_prices(env: ComputeEnvironment, decimals: int) -> dict[str, Fraction]:
    """Prices in the fee token's base units per unit per minute (exact)."""
    return {r: Fraction(Decimal(str(p))) * 10**decimals for r, p in prices(env).items()}


def exact_amounts(amounts: dict[str, float]) -> dict[str, Decimal]:
    return {r: Decimal(str(a)) for r, a in amounts.items()}


def quote(env: ComputeEnvironment, amounts: dict[str, float], seconds: int, decimals: int) -> int:
    """Base units of the fee token a job of ``seconds`` may cost: the one pricing rule
    (:func:`operator_engine.billing.job_cost`) at the environment's minimum duration or more.

    >>> env = ComputeEnvironment(id="e", cpu_number=2, max_jobs=2, prices=(("cpu", 0.5),))
    >>> quote(env, {"cpu": 1, "ram": 1, "disk": 1}, 61, 18)
    1000000000000000000
    """
    return billing.job_cost(
        base_prices(env, decimals),
        exact_amounts(amounts),
        seconds,
        min_duration_s=env.min_job_duration,
    )


def rate_per_minute(env: ComputeEnvironment, amounts: dict[str, float], decimals: int) -> Fraction:
    """Base units per minute of a job running ``amounts`` (what the claim charges by)."""
    return billing.rate_per_minute(base_prices(env, decimals), exact_amounts(amounts))


def lock_seconds(duration: int) -> int:
    """How long a payment stays locked for a job of ``duration`` seconds (``minLockSeconds``)."""
    return duration + CLAIM_MARGIN_S
