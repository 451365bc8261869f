"""The one pricing rule of paid jobs (operator_engine.billing) and the settling status 71."""

from __future__ import annotations

import doctest
import math
from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from operator_engine import billing
from operator_engine.billing import billed_minutes, cost_at_rate, job_cost, rate_per_minute
from operator_engine.lifecycle import is_allowed
from operator_engine.statuses import (
    IN_FLIGHT,
    OCCUPYING,
    TERMINAL,
    JobStatus,
    status_text,
)

prices = st.dictionaries(
    st.sampled_from(["cpu", "ram", "disk", "gpu"]), st.integers(0, 10**20), min_size=1
)
durations = st.integers(0, 10 * 24 * 3600)


def test_doctests() -> None:
    assert doctest.testmod(billing).failed == 0


@pytest.mark.parametrize(
    ("duration", "bounds", "minutes"),
    [
        (0, (0, None), 0),
        (1, (0, None), 1),
        (59.5, (0, None), 1),
        (60, (0, None), 1),
        (60.001, (0, None), 2),
        (30, (60, None), 1),
        (30, (61, None), 2),
        (4000, (0, 3600), 60),
        (0, (300, 600), 5),
    ],
)
def test_billed_minutes(duration: float, bounds: tuple[int, int | None], minutes: int) -> None:
    assert billed_minutes(duration, *bounds) == minutes


def test_the_issue_example() -> None:
    # 2 CPUs at 1 token/min and 4 GB RAM at 0.25 token/min for 90 s: 2 started minutes
    one = 10**18
    cost = job_cost({"cpu": one, "ram": one // 4}, {"cpu": 2, "ram": 4}, 90)
    assert cost == (2 * one + 4 * one // 4) * 2


@pytest.mark.parametrize(
    ("prices", "resources", "message"),
    [
        ({"cpu": 1}, {"ram": 1}, "has no price"),
        ({"cpu": -1}, {"cpu": 1}, "must not be negative"),
        ({"cpu": 1}, {"cpu": "lots"}, "is not a number"),
    ],
)
def test_bad_prices_are_refused(prices: dict, resources: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        job_cost(prices, resources, 60)


def test_floats_are_refused_to_keep_base_units_exact() -> None:
    with pytest.raises(TypeError):
        job_cost({"cpu": 0.1}, {"cpu": 1}, 60)  # type: ignore[dict-item]


def test_unused_resources_need_no_price_and_fractions_round_up() -> None:
    assert job_cost({"cpu": 3}, {"cpu": 1, "gpu": 0}, 60) == 3
    assert job_cost({"cpu": Decimal("0.3")}, {"cpu": 1}, 60) == 1
    assert rate_per_minute({"ram": "0.5"}, {"ram": 3}) == Fraction(3, 2)


@given(prices, st.integers(0, 64), durations, durations)
def test_cost_is_monotonic_in_duration(
    price_map: dict[str, int], amount: int, a: int, b: int
) -> None:
    resources = {name: amount for name in price_map}
    low, high = sorted((a, b))
    assert job_cost(price_map, resources, low) <= job_cost(price_map, resources, high)


@given(prices, st.integers(0, 64), durations, st.integers(0, 3600), st.integers(0, 7200))
def test_cost_is_the_formula_within_the_bounds(
    price_map: dict[str, int], amount: int, duration: int, low: int, span: int
) -> None:
    resources = {name: amount for name in price_map}
    high = low + span
    cost = job_cost(price_map, resources, duration, min_duration_s=low, max_duration_s=high)
    clamped = min(max(duration, low), high)
    assert cost == sum(p * amount for p in price_map.values()) * math.ceil(clamped / 60)
    # the quote at the maximum duration bounds every claim
    quote = job_cost(price_map, resources, high, min_duration_s=low, max_duration_s=high)
    assert 0 <= cost <= quote


@given(st.fractions(min_value=0, max_value=10**6), durations)
def test_rounding_never_undercharges(rate: Fraction, duration: int) -> None:
    cost = cost_at_rate(rate, duration)
    assert cost >= rate * billed_minutes(duration) > cost - 1


def test_settling_is_between_publishing_and_finished() -> None:
    assert status_text(JobStatus.SETTLING) == "Job settling"
    assert int(JobStatus.SETTLING) == 71
    assert is_allowed(JobStatus.PUBLISHING, JobStatus.SETTLING)
    assert is_allowed(JobStatus.SETTLING, JobStatus.FINISHED)
    assert not is_allowed(JobStatus.SETTLING, JobStatus.STOPPED)  # it ran already
    assert JobStatus.SETTLING not in TERMINAL and JobStatus.SETTLING in IN_FLIGHT
    assert JobStatus.SETTLING not in OCCUPYING  # its container is gone: the slot is free
