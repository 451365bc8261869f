"""The engine's Prometheus metrics (``prometheus-client``): stage durations and live workers.

Under ``tidewater serve`` these live in its engine process and are collected through
``PROMETHEUS_MULTIPROC_DIR`` (see :mod:`provider.metrics`); a separate ``tidewater engine``
process on the same host shares them when given the same directory.
"""

from __future__ import annotations

from prometheus_client import Gauge, Histogram

STAGE_SECONDS = Histogram(
    "tidewater_job_stage_seconds",
    "Time each pipeline stage took (configure, provision, run, filter, publish…)",
    ["stage"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800, 3600),
)
WORKERS = Gauge(
    "tidewater_engine_workers",
    "Engine worker threads alive",
    multiprocess_mode="livesum",
)


def observe_stage(stage: str, seconds: float) -> None:
    """Record that one job's ``stage`` took ``seconds``."""
    STAGE_SECONDS.labels(stage=stage).observe(max(seconds, 0.0))
