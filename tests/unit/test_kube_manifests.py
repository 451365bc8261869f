"""The Kubernetes objects of a job: the dry run's YAML validated strictly against the official
OpenAPI schemas (kubernetes-validate ships them: no network, no cluster), and every security
field asserted one by one."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from operator_engine.backends.base import ContainerSpec, Limits
from operator_engine.backends.kube_dryrun import sample_spec
from operator_engine.backends.kube_manifests import (
    KubeSite,
    job_objects,
    security_context,
)
from operator_engine.environments import default_environment
from operator_engine.models import ComputeEnvironment
from tidewater.cli import main
from tidewater.settings import Settings, SettingsError

#: Kubernetes 1.30 (the oldest the issue asks for) and the newest schema the package ships
VERSIONS = ("1.30.0", kubernetes_validate.utils.latest_version())
IMAGE = "ghcr.io/example/tidewater@sha256:" + "a" * 64
URL = "http://10.96.0.20:8030"


def dry_run(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, **env: str
) -> list[dict[str, Any]]:
    for name in ("TIDEWATER_KUBERNETES_IMAGE", "TIDEWATER_KUBERNETES_INTERNAL_URL"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert main(["engine", "--backend", "kubernetes", "--dry-run"]) == 0
    return [doc for doc in yaml.safe_load_all(capsys.readouterr().out) if doc]


def containers(job: dict[str, Any]) -> list[dict[str, Any]]:
    pod = job["spec"]["template"]["spec"]
    return [*pod["initContainers"], *pod["containers"]]


@pytest.mark.parametrize("version", VERSIONS)
def test_dry_run_objects_validate_strictly(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, version: str
) -> None:
    docs = dry_run(capsys, monkeypatch)
    assert [d["kind"] for d in docs] == ["NetworkPolicy", "NetworkPolicy", "Job"]
    for doc in docs:
        kubernetes_validate.validate(doc, version, strict=True)


def test_a_schema_violation_is_caught() -> None:
    """The validator is really strict: an unknown field fails."""
    job = job_objects(*_site_spec(), ("t1", "t2"), inputs_bytes=10)[2]
    job["spec"]["template"]["spec"]["containers"][0]["securityContext"]["noSuchField"] = True
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(job, VERSIONS[0], strict=True)


def _site_spec(env: ComputeEnvironment | None = None) -> tuple[KubeSite, ContainerSpec]:
    return KubeSite("jobs", IMAGE, URL, "scope1"), sample_spec(env or default_environment())


def test_every_security_field(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    docs = dry_run(
        capsys,
        monkeypatch,
        TIDEWATER_KUBERNETES_IMAGE=IMAGE,
        TIDEWATER_KUBERNETES_INTERNAL_URL=URL,
        TIDEWATER_KUBERNETES_NAMESPACE="tidewater-jobs",
    )
    deny, transfer, job = docs
    spec = job["spec"]
    assert spec["backoffLimit"] == 0
    assert spec["activeDeadlineSeconds"] == default_environment().max_job_duration
    assert spec["ttlSecondsAfterFinished"] > 0
    for doc in docs:
        assert doc["metadata"]["namespace"] == "tidewater-jobs"
        assert doc["metadata"]["labels"]["tidewater.job_id"]
        assert doc["metadata"]["labels"]["tidewater.scope"]
    pod = spec["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False
    assert pod["enableServiceLinks"] is False
    assert pod["restartPolicy"] == "Never"
    assert pod["shareProcessNamespace"] is False
    assert pod["hostNetwork"] is False and pod["hostPID"] is False and pod["hostIPC"] is False
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    for container in containers(job):
        ctx = container["securityContext"]
        assert ctx["runAsNonRoot"] is True, container["name"]
        assert ctx["runAsUser"] == 65534
        assert ctx["readOnlyRootFilesystem"] is True
        assert ctx["allowPrivilegeEscalation"] is False
        assert ctx["privileged"] is False
        assert ctx["capabilities"] == {"drop": ["ALL"]}
        assert ctx["seccompProfile"] == {"type": "RuntimeDefault"}
        resources = container["resources"]
        assert resources["requests"] == resources["limits"], container["name"]
        assert {"cpu", "memory", "ephemeral-storage"} <= set(resources["limits"])
        assert "@sha256:" in container["image"], container["name"]
    names = [c["name"] for c in containers(job)]
    assert names == ["fetch-inputs", "wait-offline", "algorithm", "publish-outputs"]
    # the deny-all policy: every ingress and egress of the job's pods
    assert deny["spec"]["podSelector"]["matchLabels"] == {"tidewater.job_id": spec_job_id(job)}
    assert deny["spec"]["policyTypes"] == ["Ingress", "Egress"]
    assert "ingress" not in deny["spec"] and "egress" not in deny["spec"]
    # the transfer policy: egress to the provider's address and port, while labelled transfer
    selector = transfer["spec"]["podSelector"]["matchLabels"]
    assert selector["tidewater.io/network"] == "transfer"
    assert transfer["spec"]["egress"] == [
        {
            "to": [{"ipBlock": {"cidr": "10.96.0.20/32"}}],
            "ports": [{"protocol": "TCP", "port": 8030}],
        }
    ]
    assert spec["template"]["metadata"]["labels"]["tidewater.io/network"] == "transfer"


def spec_job_id(job: dict[str, Any]) -> str:
    return str(job["metadata"]["labels"]["tidewater.job_id"])


def test_the_share_becomes_requests_limits_and_volumes() -> None:
    env = ComputeEnvironment(
        "e", cpu_number=3, ram_gb=3, disk_gb=3, max_jobs=3, max_job_duration=90, gpu_number=3
    )
    site, spec = _site_spec(env)
    job = job_objects(site, spec, ("in-token", "out-token"), inputs_bytes=1000)[2]
    pod = job["spec"]["template"]["spec"]
    algorithm = next(c for c in pod["containers"] if c["name"] == "algorithm")
    limits = algorithm["resources"]["limits"]
    assert limits["cpu"] == "1000m" and limits["memory"] == str(1024**3)
    assert limits["ephemeral-storage"] == str(1000 + spec.limits.disk)
    assert limits["nvidia.com/gpu"] == "1"
    assert algorithm["image"] == spec.image and algorithm["command"][:2] == ["/bin/sh", "-c"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["data"]["emptyDir"] == {"sizeLimit": str(1000 + spec.limits.disk)}
    assert volumes["tmp"]["emptyDir"]["medium"] == "Memory"
    mounts = {m["mountPath"]: m for m in algorithm["volumeMounts"]}
    for target in ("/data/inputs", "/data/transformations", "/data/ddos"):
        assert mounts[target]["readOnly"] is True
    for target in ("/data/outputs", "/data/logs"):
        assert mounts[target]["readOnly"] is False
    assert not any("hostPath" in v for v in pod["volumes"])
    # the tokens reach only their own container, never the algorithm
    tokens = {c["name"]: c.get("env", []) for c in [*pod["initContainers"], *pod["containers"]]}
    assert tokens["fetch-inputs"] == [{"name": "TIDEWATER_TRANSFER_TOKEN", "value": "in-token"}]
    assert tokens["publish-outputs"] == [{"name": "TIDEWATER_TRANSFER_TOKEN", "value": "out-token"}]
    assert "in-token" not in json.dumps(algorithm) and "out-token" not in json.dumps(algorithm)
    assert job["spec"]["activeDeadlineSeconds"] == 90
    kubernetes_validate.validate(job, VERSIONS[0], strict=True)


def test_limits_map_and_security_context_is_one_place() -> None:
    spec = ContainerSpec("j", IMAGE, "true", {}, Limits(cpu=0.25, memory=1, disk=2, duration=1))
    job = job_objects(KubeSite("n", IMAGE, URL), spec, ("a", "b"), inputs_bytes=0)[2]
    for container in containers(job):
        assert container["securityContext"] == security_context()


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("TIDEWATER_KUBERNETES_IMAGE", "tidewater:latest"),
        ("TIDEWATER_KUBERNETES_IMAGE", "registry/tidewater@sha256:abc"),
        ("TIDEWATER_KUBERNETES_INTERNAL_URL", "http://provider.tidewater.svc:8030"),
        ("TIDEWATER_KUBERNETES_INTERNAL_URL", "ftp://10.0.0.1"),
        ("TIDEWATER_KUBERNETES_NAMESPACE", "Not_A_Namespace"),
    ],
)
def test_malformed_kubernetes_settings_are_named(name: str, value: str) -> None:
    with pytest.raises(SettingsError, match=name):
        Settings.from_env({name: value})


def test_kubernetes_settings_are_read() -> None:
    settings = Settings.from_env(
        {
            "KUBECONFIG": "/etc/k/config",
            "TIDEWATER_KUBERNETES_NAMESPACE": "jobs-1",
            "TIDEWATER_KUBERNETES_IMAGE": IMAGE,
            "TIDEWATER_KUBERNETES_INTERNAL_URL": URL + "/",
        }
    )
    assert settings.kubeconfig == "/etc/k/config"
    assert settings.kubernetes_namespace == "jobs-1"
    assert (settings.kubernetes_image, settings.kubernetes_internal_url) == (IMAGE, URL)


def test_dry_run_needs_the_backend(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["engine", "--dry-run"]) == 2
    assert "--backend kubernetes" in capsys.readouterr().err
    assert main(["engine", "--backend", "kubernetes"]) == 2
    assert "with --dry-run only" in capsys.readouterr().err


def test_dry_run_reads_the_environments_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    envs = tmp_path / "envs.json"
    envs.write_text(json.dumps([{"id": "big", "cpuNumber": 8, "ramGB": 16, "maxJobs": 2}]))
    docs = dry_run(capsys, monkeypatch, TIDEWATER_ENVIRONMENTS=str(envs))
    algorithm = next(c for c in docs[2]["spec"]["template"]["spec"]["containers"])
    assert algorithm["resources"]["limits"]["cpu"] == "4000m"
