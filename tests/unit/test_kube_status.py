"""A job's step and failure status from its pod, read from pod and Job objects shaped like the
API's responses (tests/fixtures/kubernetes: written from the API reference, since no cluster
runs here to record them from)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from operator_engine.backends.kube_status import Step, pod_verdict
from operator_engine.statuses import JobStatus

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "kubernetes"
S = JobStatus


def load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / f"{name}.json").read_text())
    return data


@pytest.mark.parametrize(
    ("pod", "step"),
    [
        ("pending-unscheduled", Step.WAITING),
        ("fetching", Step.FETCHING),
        ("gating", Step.GATING),
        ("running", Step.RUNNING),
        ("publishing", Step.PUBLISHING),
        ("succeeded", Step.SUCCEEDED),
    ],
)
def test_steps_of_a_healthy_pod(pod: str, step: Step) -> None:
    verdict = pod_verdict(load(f"pod-{pod}"))
    assert verdict.step is step and verdict.status is None


@pytest.mark.parametrize(
    ("pod", "status", "words"),
    [
        ("oom-killed", S.RUN_FAILED, "out of memory"),
        ("algorithm-exit-3", S.RUN_FAILED, "exit code 3"),
        ("image-pull-backoff", S.ALGO_PROVISIONING_FAILED, "ImagePullBackOff"),
        ("err-image-pull", S.ALGO_PROVISIONING_FAILED, "ErrImagePull"),
        ("invalid-image-name", S.ALGO_PROVISIONING_FAILED, "InvalidImageName"),
        ("tidewater-image-pull", S.RUN_FAILED, "tidewater image (fetch-inputs)"),
        ("fetch-failed", S.DATA_PROVISIONING_FAILED, "409 token_used"),
        ("gate-failed", S.RUN_FAILED, "wait-offline failed"),
        ("publish-too-large", S.EGRESS_EXCEEDED, "413 too_large"),
        ("publish-failed", S.UPLOAD_FAILED, "gave up waiting"),
        ("evicted-ephemeral", S.EGRESS_EXCEEDED, "ephemeral local storage"),
        ("evicted-memory", S.RUN_FAILED, "low on resource: memory"),
        ("create-config-error", S.RUN_FAILED, "runAsNonRoot"),
    ],
)
def test_failures_map_to_ocean_statuses(pod: str, status: JobStatus, words: str) -> None:
    verdict = pod_verdict(load(f"pod-{pod}"))
    assert verdict.step is Step.FAILED
    assert verdict.status is status, verdict
    assert words in verdict.reason


def test_oom_keeps_the_exit_details() -> None:
    verdict = pod_verdict(load("pod-oom-killed"))
    assert verdict.oom_killed and verdict.exit_code == 137
    plain = pod_verdict(load("pod-algorithm-exit-3"))
    assert not plain.oom_killed and plain.exit_code == 3


def test_deadline_exceeded_stops_the_job_whatever_the_pod_says() -> None:
    job = load("job-deadline-exceeded")
    for pod in (load("pod-deadline-running"), None):
        verdict = pod_verdict(pod, job)
        assert verdict.status is S.STOPPED and "600s" in verdict.reason


def test_a_job_without_its_pod_yet_is_waiting() -> None:
    assert pod_verdict(None).step is Step.WAITING
    running_job = {**load("job-deadline-exceeded"), "status": {"active": 1}}
    assert pod_verdict(load("pod-running"), running_job).step is Step.RUNNING
