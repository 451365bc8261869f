"""What a paid (C2D v2) job costs: the one pricing rule, shared by the quote and the claim.

An environment prices each resource per unit per minute, in the fee token's base units. A job
of ``resources`` (amount per resource id) that runs ``duration_s`` seconds costs

    Σ price[r] * amount[r] * ceil(clamp(duration_s, min_duration_s, max_duration_s) / 60)

rounded up to a whole base unit. The quote (``initializeCompute``, the escrow lock) uses the
requested ``maxJobDuration`` as the duration; the claim after the job uses the time the
algorithm actually ran, clamped to the environment's ``[minJobDuration, maxJobDuration]``.
A job whose algorithm never started costs nothing (the minimum applies only to a run).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from decimal import Decimal
from fractions import Fraction

Number = int | Decimal | Fraction | str


def _exact(value: Number, what: str) -> Fraction:
    if isinstance(value, bool) or isinstance(value, float):
        raise TypeError(f"{what} must be an int, Decimal or decimal string, not {value!r}")
    try:
        result = Fraction(value)
    except (ValueError, ZeroDivisionError) as exc:
        raise ValueError(f"{what} {value!r} is not a number") from exc
    if result < 0:
        raise ValueError(f"{what} must not be negative: {value}")
    return result


def billed_minutes(
    duration_s: float | int, min_duration_s: int = 0, max_duration_s: int | None = None
) -> int:
    """Whole minutes billed for ``duration_s`` seconds, clamped to the bounds first.

    >>> billed_minutes(0.5)
    1
    >>> billed_minutes(60)
    1
    >>> billed_minutes(61)
    2
    >>> billed_minutes(5, min_duration_s=120)
    2
    >>> billed_minutes(10_000, max_duration_s=600)
    10
    >>> billed_minutes(0)
    0
    """
    if duration_s < 0 or min_duration_s < 0:
        raise ValueError("durations must not be negative")
    if max_duration_s is not None and max_duration_s < min_duration_s:
        raise ValueError(f"max duration {max_duration_s} s is below the minimum {min_duration_s} s")
    seconds = max(Fraction(duration_s), Fraction(min_duration_s))
    if max_duration_s is not None:
        seconds = min(seconds, Fraction(max_duration_s))
    return math.ceil(seconds / 60)


def rate_per_minute(prices: Mapping[str, Number], resources: Mapping[str, Number]) -> Fraction:
    """Σ price * amount over ``resources`` (base units per minute, exact).

    Every resource with a non-zero amount must have a price (a missing price is an error,
    never free). Prices of resources the job does not use are ignored.

    >>> rate_per_minute({"cpu": 3, "ram": "0.5"}, {"cpu": 2, "ram": 4})
    Fraction(8, 1)
    """
    total = Fraction(0)
    for resource, amount in resources.items():
        quantity = _exact(amount, f"amount of {resource}")
        if quantity == 0:
            continue
        if resource not in prices:
            raise ValueError(f"resource {resource!r} has no price")
        total += _exact(prices[resource], f"price of {resource}") * quantity
    return total


def job_cost(
    prices: Mapping[str, Number],
    resources: Mapping[str, Number],
    duration_s: float | int,
    *,
    min_duration_s: int = 0,
    max_duration_s: int | None = None,
) -> int:
    """The cost in token base units (an int, rounded up) of running ``resources`` for
    ``duration_s`` seconds at ``prices`` (base units per unit per minute).

    >>> job_cost({"cpu": 10**18, "ram": 10**17}, {"cpu": 1, "ram": 2}, 90)
    2400000000000000000
    >>> job_cost({"cpu": 5}, {"cpu": 1}, 1, min_duration_s=300)
    25
    >>> job_cost({"cpu": "0.1"}, {"cpu": 1}, 60)
    1
    """
    return cost_at_rate(
        rate_per_minute(prices, resources),
        duration_s,
        min_duration_s=min_duration_s,
        max_duration_s=max_duration_s,
    )


def cost_at_rate(
    rate: Number,
    duration_s: float | int,
    *,
    min_duration_s: int = 0,
    max_duration_s: int | None = None,
) -> int:
    """``ceil(rate * billed_minutes(...))``: :func:`job_cost` for a precomputed rate.

    >>> cost_at_rate("2.5", 61)
    5
    """
    minutes = billed_minutes(duration_s, min_duration_s, max_duration_s)
    return math.ceil(_exact(rate, "rate") * minutes)
