"""``GET /metrics``: Prometheus text format (``prometheus-client``).

Counted per request: requests by route, method and status; latency by route; signature
failures; compute-validation failures by resource and code; bytes of results and downloads
served. Read from the store at each scrape: jobs by environment and status, and the queue depth
(jobs waiting at 1 or 10). The engine adds its stage durations and live workers
(:mod:`operator_engine.metrics`).

Under gunicorn each worker process writes its samples to ``PROMETHEUS_MULTIPROC_DIR`` (set by
``tidewater serve`` before any process imports the client) and a scrape merges them. By default
only loopback clients may scrape; ``TIDEWATER_METRICS_PUBLIC=true`` opens it.
"""

from __future__ import annotations

import ipaddress
import os
from bisect import bisect_left
from collections import Counter as Counter_
from collections.abc import Iterable, Iterator
from typing import Any

from flask import Blueprint, Flask, Response, current_app, request
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from datastore.jobs import JobStore
from provider.errors import ResourceError, SignatureError
from provider.request_accounting import Entry
from provider.request_accounting import flush as flush_accounting

bp = Blueprint("metrics", __name__)

REQUESTS = Counter(
    "tidewater_http_requests", "HTTP requests answered", ["route", "method", "status"]
)
LATENCY = Histogram(
    "tidewater_http_request_duration_seconds",
    "Time to answer a request (the body of a streamed result excluded)",
    ["route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10),
)
SIGNATURE_FAILURES = Counter(
    "tidewater_signature_failures", "Signed requests refused for their signature or nonce"
)
VALIDATION_FAILURES = Counter(
    "tidewater_compute_validation_failures",
    "Compute, order and payment checks that refused a request, by resource and code",
    ["resource", "code"],
)
BYTES_SERVED = Counter(
    "tidewater_bytes_served", "Bytes of job results and downloads sent", ["route"]
)
#: Labelled children by label values, as ``labels()`` keeps them, without its lock and checks
#: on every request (route rules, methods and statuses are few).
_REQUEST_COUNTERS: dict[tuple[str, str, int], Any] = {}
_LATENCIES: dict[str, Any] = {}
_SERVED_ROUTES = {"/api/services/computeResult", "/api/services/download"}
_WAITING = (1, 10)


class StoreCollector(Collector):
    """Job counts read from the store at scrape time (true across all processes)."""

    def __init__(self, store: JobStore) -> None:
        self.store = store

    def collect(self) -> Iterator[GaugeMetricFamily]:
        jobs = GaugeMetricFamily(
            "tidewater_jobs",
            "Jobs in the store by environment and status",
            labels=["environment", "status"],
        )
        queued = 0
        for env_id, status, count in self.store.status_counts():
            jobs.add_metric([env_id, str(status)], count)
            if status in _WAITING:
                queued += count
        yield jobs
        yield GaugeMetricFamily(
            "tidewater_queue_depth", "Jobs waiting for a worker (status 1 or 10)", value=queued
        )


def install_metrics(app: Flask) -> None:
    """Serve ``/metrics`` (requests are counted by :mod:`provider.request_accounting`)."""
    app.register_blueprint(bp)


def count(batch: Iterable[Entry]) -> None:
    """Add a batch of answered requests to the request metrics: one increment per label set
    per batch, one latency observation per request."""
    answered: Counter_[tuple[str, str, int]] = Counter_()
    latencies: dict[str, list[float]] = {}
    served: Counter_[str] = Counter_()
    signature_failures = 0
    refusals: Counter_[tuple[str, str]] = Counter_()
    for entry in batch:
        route = entry.route or "unmatched"
        answered[(route, entry.method, entry.status)] += 1
        latencies.setdefault(route, []).append(entry.seconds)
        error = entry.error
        if isinstance(error, SignatureError):
            signature_failures += 1
        elif isinstance(error, ResourceError):
            refusals[(error.resource, error.code)] += 1
        if route in _SERVED_ROUTES and entry.status in (200, 206):
            served[route] += _content_length(entry.headers)
    for key, n in answered.items():
        counter = _REQUEST_COUNTERS.get(key)
        if counter is None:
            counter = _REQUEST_COUNTERS[key] = REQUESTS.labels(key[0], key[1], str(key[2]))
        counter.inc(n)
    if signature_failures:
        SIGNATURE_FAILURES.inc(signature_failures)
    for (resource, code), n in refusals.items():
        VALIDATION_FAILURES.labels(resource, code).inc(n)
    for route, size in served.items():
        BYTES_SERVED.labels(route).inc(size)
    for route, seconds in latencies.items():
        latency = _LATENCIES.get(route)
        if latency is None:
            latency = _LATENCIES[route] = LATENCY.labels(route)
        observe_all(latency, seconds)


def observe_all(histogram: Any, amounts: list[float]) -> None:
    """``histogram.observe(a)`` for each of ``amounts``, with one increment per bucket touched
    and one of the sum (each increment of a multiprocess value takes a lock and writes a
    shared file). Uses the child's ``_upper_bounds``/``_buckets``/``_sum``, which
    ``observe`` itself uses (prometheus-client 0.2x; tests/provider/test_metrics.py checks the
    two agree)."""
    bounds = histogram._upper_bounds
    per_bucket = Counter_(bisect_left(bounds, amount) for amount in amounts)
    histogram._sum.inc(sum(amounts))
    for index, n in per_bucket.items():
        histogram._buckets[index].inc(n)


def _content_length(headers: list[tuple[str, str]]) -> int:
    for name, value in headers:
        if name.lower() == "content-length":
            return int(value) if value.isdigit() else 0
    return 0


def _is_loopback(address: str | None) -> bool:
    try:
        return address is not None and ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


@bp.get("/metrics")
def metrics() -> Response:
    svc = current_app.extensions["tidewater"]
    if not (svc.settings.metrics_public or _is_loopback(request.remote_addr)):
        response = Response(
            '{"error": "metrics are served to loopback clients only '
            '(TIDEWATER_METRICS_PUBLIC=true opens them)"}',
            status=403,
            mimetype="application/json",
        )
        return response
    flush_accounting()  # this process's requests so far (others' are at most 0.1 s behind)
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        counted = CollectorRegistry()
        MultiProcessCollector(counted)  # every HTTP worker's and the engine's samples, merged
    else:
        counted = REGISTRY  # one process: its own samples
    stored = CollectorRegistry()
    stored.register(StoreCollector(svc.engine.store))
    body = generate_latest(counted) + generate_latest(stored)
    return Response(body, mimetype=CONTENT_TYPE_LATEST)
