"""``tidewater engine --backend kubernetes --dry-run``: the objects of one sample job, as YAML.

No cluster is contacted and no token is minted: the sample job's tokens are placeholders, and
settings not given (the tidewater image, the internal URL) are shown with example values,
each named in the header so nobody mistakes them for configuration.
"""

from __future__ import annotations

from typing import Any

import yaml

from operator_engine.backends.base import ContainerSpec, Limits
from operator_engine.backends.kube_manifests import KubeSite, job_objects
from operator_engine.environments import gpu_share, job_share
from operator_engine.models import ComputeEnvironment

SAMPLE_JOB = "0123456789abcdef0123456789abcdef"
#: an example algorithm image by digest (the digest is illustrative)
SAMPLE_ALGORITHM = "docker.io/library/python@sha256:" + "5" * 64
EXAMPLE_IMAGE = "registry.example/tidewater@sha256:" + "0" * 64
EXAMPLE_URL = "http://10.96.0.20:8030"
SAMPLE_INPUTS = 1024 * 1024
PLACEHOLDER_TOKENS = ("<inputs token, minted at start>", "<outputs token, minted at start>")


def sample_spec(env: ComputeEnvironment, job_id: str = SAMPLE_JOB) -> ContainerSpec:
    """The container of a sample job of ``env``: its share of the environment."""
    cpus, ram, disk = job_share(env)
    gpus, devices = gpu_share(env)
    return ContainerSpec(
        job_id=job_id,
        image=SAMPLE_ALGORITHM,
        command="python3 /data/transformations/algorithm",
        environment={
            "DIDS": '["sample"]',
            "TRANSFORMATION_DID": "",
            "VOLUME": "/data",
            "INPUTS": "/data/inputs",
            "OUTPUTS": "/data/outputs",
            "LOGS": "/data/logs",
        },
        limits=Limits(
            cpu=cpus,
            memory=ram,
            disk=max(disk - SAMPLE_INPUTS, 0),
            duration=env.max_job_duration,
            tmp=min(64 * 1024**2, ram // 4),
            gpus=gpus,
            gpu_devices=devices,
        ),
    )


def sample_objects(
    env: ComputeEnvironment, namespace: str, image: str | None, internal_url: str | None
) -> list[dict[str, Any]]:
    """Every object one sample job of ``env`` would create (example values where unset)."""
    site = KubeSite(namespace, image or EXAMPLE_IMAGE, internal_url or EXAMPLE_URL, "dryrun")
    return job_objects(site, sample_spec(env), PLACEHOLDER_TOKENS, inputs_bytes=SAMPLE_INPUTS)


def render(
    env: ComputeEnvironment, namespace: str, image: str | None, internal_url: str | None
) -> str:
    """The YAML documents of :func:`sample_objects`, after a comment header."""
    notes = [
        f"# tidewater engine --backend kubernetes --dry-run: one sample job of {env.id!r}",
        f"# namespace {namespace}; nothing was sent to a cluster and no token was minted",
    ]
    if image is None:
        notes.append(f"# TIDEWATER_KUBERNETES_IMAGE is not set: shown as {EXAMPLE_IMAGE}")
    if internal_url is None:
        notes.append(f"# TIDEWATER_KUBERNETES_INTERNAL_URL is not set: shown as {EXAMPLE_URL}")
    body: str = yaml.safe_dump_all(
        sample_objects(env, namespace, image, internal_url), sort_keys=False, width=100
    )
    return "\n".join(notes) + "\n---\n" + body
