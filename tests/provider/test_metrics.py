"""``GET /metrics``: parsed with prometheus_client's own parser, moving with a job."""

from __future__ import annotations

from typing import Any

from eth_account.signers.local import LocalAccount
from flask.testing import FlaskClient
from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.parser import text_string_to_metric_families

from operator_engine.api import Engine
from provider.metrics import observe_all
from tests.provider.core_support import (  # noqa: F401 (fixtures)
    FileServer,
    app_fixture,
    client_fixture,
    consumer_fixture,
    engine_fixture,
    files_fixture,
    next_nonce,
    result_query,
    settings_fixture,
    submit,
)


def scrape(client: FlaskClient) -> dict[str, Any]:
    resp = client.get("/metrics")
    assert resp.status_code == 200 and resp.mimetype == "text/plain"
    return {f.name: f for f in text_string_to_metric_families(resp.get_data(as_text=True))}


def value(families: dict[str, Any], name: str, suffix: str = "", **labels: str) -> float:
    total = 0.0
    for sample in families[name].samples if name in families else ():
        if sample.name == name + suffix and all(
            sample.labels.get(k) == v for k, v in labels.items()
        ):
            total += sample.value
    return total


def test_metrics_follow_a_job(
    client: FlaskClient, engine: Engine, consumer: LocalAccount, files: FileServer
) -> None:
    before = scrape(client)
    job = submit(engine, consumer.address, files, run=False)
    queued = scrape(client)
    assert value(queued, "tidewater_queue_depth") == value(before, "tidewater_queue_depth") + 1
    assert value(queued, "tidewater_jobs", status="1", environment=job.environment) == 1
    engine.run_until_idle()
    done = scrape(client)
    assert value(done, "tidewater_queue_depth") == value(before, "tidewater_queue_depth")
    assert value(done, "tidewater_jobs", status="70", environment=job.environment) >= 1
    runs_before = value(before, "tidewater_job_stage_seconds", "_count", stage="run")
    assert value(done, "tidewater_job_stage_seconds", "_count", stage="run") == runs_before + 1

    served = value(done, "tidewater_bytes_served", "_total")
    resp = client.get(
        "/api/services/computeResult",
        query_string=result_query(consumer, job.job_id, 0, next_nonce(client, consumer.address)),
    )
    assert resp.status_code == 200
    after = scrape(client)
    assert value(after, "tidewater_bytes_served", "_total") == served + len(resp.data)
    route = "/api/services/computeResult"
    assert value(after, "tidewater_http_requests", "_total", route=route, status="200") >= 1
    assert value(after, "tidewater_http_request_duration_seconds", "_count", route=route) >= 1


def test_signature_and_validation_failures_are_counted(
    client: FlaskClient, engine: Engine, consumer: LocalAccount, files: FileServer
) -> None:
    job = submit(engine, consumer.address, files)
    before = scrape(client)
    query = result_query(consumer, job.job_id, 0, next_nonce(client, consumer.address))
    query["signature"] = "0x" + "00" * 65
    assert client.get("/api/services/computeResult", query_string=query).status_code == 400
    after = scrape(client)
    failures = value(after, "tidewater_signature_failures", "_total")
    assert failures == value(before, "tidewater_signature_failures", "_total") + 1


def test_only_loopback_may_scrape_unless_opened(client: FlaskClient, app: Any) -> None:
    remote = {"REMOTE_ADDR": "203.0.113.7"}
    resp = client.get("/metrics", environ_base=remote)
    assert resp.status_code == 403 and "TIDEWATER_METRICS_PUBLIC" in resp.get_json()["error"]
    svc = app.extensions["tidewater"]
    svc.settings = svc.settings.with_(metrics_public=True)
    assert client.get("/metrics", environ_base=remote).status_code == 200


def test_requests_are_counted_exactly(client: FlaskClient) -> None:
    route = "/api/services/nonce"
    before = value(scrape(client), "tidewater_http_requests", "_total", route=route, status="200")
    for _ in range(7):
        assert client.get(route, query_string={"userAddress": "0x" + "ab" * 20}).status_code == 200
    after = scrape(client)  # /metrics accounts for this process's queued requests first
    assert value(after, "tidewater_http_requests", "_total", route=route, status="200") == (
        before + 7
    )


def test_batched_observations_equal_one_by_one() -> None:
    amounts = [0.0, 0.0004, 0.001, 0.0025, 0.003, 0.005, 0.7, 2.5, 9.99, 10.0, 11.0, 1e9, -1.0]
    buckets = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10)
    samples = []
    for batched in (False, True):
        registry = CollectorRegistry()
        histogram = Histogram("h", "h", ["route"], buckets=buckets, registry=registry)
        child = histogram.labels("r")
        if batched:
            observe_all(child, amounts)
        else:
            for amount in amounts:
                child.observe(amount)
        samples.append(
            sorted(
                (sample.name, tuple(sorted(sample.labels.items())), sample.value)
                for family in registry.collect()
                for sample in family.samples
                if not sample.name.endswith("_created")
            )
        )
    assert samples[0] == samples[1]
