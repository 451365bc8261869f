"""The Kubernetes objects of one compute job, as plain dicts (pure: no client, no cluster).

One job is two ``NetworkPolicy`` objects and one ``Job`` (see docs/kubernetes.md):

* ``tw-<job>-deny`` selects the job's pods and denies all ingress and egress;
* ``tw-<job>-transfer`` allows egress to the provider's internal address and port only, and
  only to a pod labelled ``tidewater.io/network=transfer`` — the engine sets the label to
  ``closed`` once the inputs are in and back to ``transfer`` once the algorithm has ended;
* the ``Job``'s pod: init containers ``fetch-inputs`` (pulls the inputs into the ``data``
  emptyDir) and ``wait-offline`` (lets the pod go on only when its labels say ``closed`` and
  the provider is unreachable), then ``algorithm`` and ``publish-outputs`` (waits for the
  network to reopen and the engine to arm its token, then uploads ``/data/outputs``).

Every container runs as ``nobody`` with a read-only root, no privilege escalation, no
capabilities and the runtime's default seccomp profile; the pod mounts no service-account
token and gets no service links; requests equal limits (CPU, memory, ephemeral storage).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from operator_engine.backends.base import JOB_LABEL, SCOPE_LABEL, ContainerSpec
from operator_engine.transfer import NETWORK_LABEL, TOKEN_ENV

NOBODY = 65534
#: a finished Job (and its pod) is garbage-collected after this, should the engine not
#: delete it first (it does once it has collected the job)
TTL_AFTER_FINISHED = 600
#: the tidewater containers' own fixed share, added to the algorithm's
HELPER_RESOURCES = {"cpu": "100m", "memory": "128Mi", "ephemeral-storage": "16Mi"}
PULL_WAIT = 300
OFFLINE_WAIT = 600
PUSH_GRACE = 600
ALGORITHM = "algorithm"
FETCH, OFFLINE, PUBLISH = "fetch-inputs", "wait-offline", "publish-outputs"
#: the algorithm's mounts of the ``data`` emptyDir (subPath, mount point, read-only)
DATA_MOUNTS = (
    ("inputs", "/data/inputs", True),
    ("transformations", "/data/transformations", True),
    ("ddos", "/data/ddos", True),
    ("outputs", "/data/outputs", False),
    ("logs", "/data/logs", False),
)


@dataclass(frozen=True)
class KubeSite:
    """Where jobs run: the namespace, the tidewater image (by digest) that moves their data,
    the provider's internal URL (``http://<IP>:<port>``) and the engine's scope label."""

    namespace: str
    image: str
    internal_url: str
    scope: str | None = None


def job_name(job_id: str) -> str:
    """The Job's name (also the prefix of its policies): a DNS label.

    >>> job_name("3F2a_b")
    'tw-3f2a-b'
    """
    return "tw-" + job_id.lower().replace("_", "-")[:56]


def cpu_quantity(cpus: float) -> str:
    """CPUs as millicores (at least 1m).

    >>> cpu_quantity(0.5), cpu_quantity(2), cpu_quantity(0)
    ('500m', '2000m', '1m')
    """
    return f"{max(math.ceil(cpus * 1000), 1)}m"


def _labels(site: KubeSite, job_id: str) -> dict[str, str]:
    return {JOB_LABEL: job_id, **({SCOPE_LABEL: site.scope} if site.scope else {})}


def _meta(site: KubeSite, name: str, job_id: str) -> dict[str, Any]:
    return {"name": name, "namespace": site.namespace, "labels": _labels(site, job_id)}


def _endpoint(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    return (parts.hostname or "", parts.port or 80)


def network_policies(site: KubeSite, job_id: str) -> list[dict[str, Any]]:
    """The deny-all policy and the transfer-phase egress policy of ``job_id``'s pods."""
    host, port = _endpoint(site.internal_url)
    cidr = f"{host}/128" if ":" in host else f"{host}/32"
    name = job_name(job_id)
    deny = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": _meta(site, f"{name}-deny", job_id),
        "spec": {
            "podSelector": {"matchLabels": {JOB_LABEL: job_id}},
            "policyTypes": ["Ingress", "Egress"],
        },
    }
    transfer = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": _meta(site, f"{name}-transfer", job_id),
        "spec": {
            "podSelector": {"matchLabels": {JOB_LABEL: job_id, NETWORK_LABEL: "transfer"}},
            "policyTypes": ["Egress"],
            "egress": [
                {"to": [{"ipBlock": {"cidr": cidr}}], "ports": [{"protocol": "TCP", "port": port}]}
            ],
        },
    }
    return [deny, transfer]


def security_context() -> dict[str, Any]:
    """Every container's: nobody, read-only root, no escalation, no capabilities."""
    return {
        "runAsNonRoot": True,
        "runAsUser": NOBODY,
        "runAsGroup": NOBODY,
        "readOnlyRootFilesystem": True,
        "allowPrivilegeEscalation": False,
        "privileged": False,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def _same(amounts: Mapping[str, str]) -> dict[str, dict[str, str]]:
    return {"requests": dict(amounts), "limits": dict(amounts)}


def algorithm_resources(spec: ContainerSpec, inputs_bytes: int) -> dict[str, dict[str, str]]:
    """Requests = limits: the job's CPU and memory share, its disk share (the staged inputs
    plus what it may write) as ephemeral storage, its GPUs (``nvidia.com/gpu``; explicit
    device ids cannot be pinned on Kubernetes: their count is asked for)."""
    limits = spec.limits
    amounts = {
        "cpu": cpu_quantity(limits.cpu),
        "memory": str(limits.memory),
        "ephemeral-storage": str(inputs_bytes + limits.disk),
    }
    gpus = len(limits.gpu_devices) or limits.gpus
    if gpus:
        amounts["nvidia.com/gpu"] = str(gpus)
    return _same(amounts)


def _helper(
    site: KubeSite, name: str, args: list[str], token: str | None, mounts: list[dict[str, Any]]
) -> dict[str, Any]:
    container: dict[str, Any] = {
        "name": name,
        "image": site.image,
        "command": ["python", "-m", "operator_engine.transfer", *args],
        "securityContext": security_context(),
        "resources": _same(HELPER_RESOURCES),
        "volumeMounts": mounts,
        # its last log line (the refusal) becomes the termination message the engine reads
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }
    if token is not None:
        container["env"] = [{"name": TOKEN_ENV, "value": token}]
    return container


def job_manifest(
    site: KubeSite, spec: ContainerSpec, tokens: tuple[str, str], *, inputs_bytes: int
) -> dict[str, Any]:
    """The ``Job`` of ``spec`` (``tokens``: the inputs and outputs tokens; ``inputs_bytes``:
    what the staged inputs take in the ``data`` emptyDir besides the disk share)."""
    job_id, limits = spec.job_id, spec.limits
    url = site.internal_url
    duration = max(math.ceil(limits.duration), 1)
    data = {"name": "data", "mountPath": "/data"}
    algorithm = {
        "name": ALGORITHM,
        "image": spec.image,
        "command": ["/bin/sh", "-c", spec.command],
        "workingDir": "/",
        "env": [{"name": k, "value": v} for k, v in sorted(spec.environment.items())],
        "securityContext": security_context(),
        "resources": algorithm_resources(spec, inputs_bytes),
        "volumeMounts": [
            *(
                {"name": "data", "mountPath": target, "subPath": sub, "readOnly": ro}
                for sub, target, ro in DATA_MOUNTS
            ),
            {"name": "tmp", "mountPath": "/tmp"},
        ],
    }
    fetch = _helper(
        site,
        FETCH,
        [
            *("pull", "--url", url, "--job", job_id, "--dest", "/data"),
            *("--max-bytes", str(inputs_bytes), "--wait", str(PULL_WAIT)),
        ],
        tokens[0],
        [data],
    )
    offline = _helper(
        site,
        OFFLINE,
        ["offline", "--url", url, "--labels", "/podinfo/labels", "--wait", str(OFFLINE_WAIT)],
        None,
        [{"name": "podinfo", "mountPath": "/podinfo", "readOnly": True}],
    )
    publish = _helper(
        site,
        PUBLISH,
        [
            *("push", "--url", url, "--job", job_id, "--source", "/data"),
            *("--wait", str(duration + PUSH_GRACE)),
        ],
        tokens[1],
        [{**data, "readOnly": True}],
    )
    pod_labels = {**_labels(site, job_id), NETWORK_LABEL: "transfer"}
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": _meta(site, job_name(job_id), job_id),
        "spec": {
            "backoffLimit": 0,
            "activeDeadlineSeconds": duration,
            "ttlSecondsAfterFinished": TTL_AFTER_FINISHED,
            "template": {
                "metadata": {"labels": pod_labels},
                "spec": {
                    "restartPolicy": "Never",
                    "automountServiceAccountToken": False,
                    "enableServiceLinks": False,
                    "shareProcessNamespace": False,
                    "hostNetwork": False,
                    "hostPID": False,
                    "hostIPC": False,
                    "terminationGracePeriodSeconds": 5,
                    "securityContext": {
                        "runAsNonRoot": True,
                        "runAsUser": NOBODY,
                        "runAsGroup": NOBODY,
                        "fsGroup": NOBODY,
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },
                    "initContainers": [fetch, offline],
                    "containers": [algorithm, publish],
                    "volumes": _volumes(inputs_bytes + limits.disk, limits.tmp),
                },
            },
        },
    }


def _volumes(data_bytes: int, tmp_bytes: int) -> list[dict[str, Any]]:
    labels = {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}}
    return [
        {"name": "data", "emptyDir": {"sizeLimit": str(data_bytes)}},
        {"name": "tmp", "emptyDir": {"medium": "Memory", "sizeLimit": str(tmp_bytes)}},
        {"name": "podinfo", "downwardAPI": {"items": [labels]}},
    ]


def job_objects(
    site: KubeSite, spec: ContainerSpec, tokens: tuple[str, str], *, inputs_bytes: int
) -> list[dict[str, Any]]:
    """Everything created for one job, in creation order (policies before the pod exists)."""
    return [
        *network_policies(site, spec.job_id),
        job_manifest(site, spec, tokens, inputs_bytes=inputs_bytes),
    ]
