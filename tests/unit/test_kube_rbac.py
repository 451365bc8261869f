"""deploy/kubernetes/rbac.yaml: valid objects, and exactly the rights the engine's API calls
need (read from operator_engine/backends/kube_client.py), nothing more."""

from __future__ import annotations

import re
from pathlib import Path

import kubernetes_validate
import yaml

ROOT = Path(__file__).resolve().parents[2]
RBAC = ROOT / "deploy" / "kubernetes" / "rbac.yaml"
CLIENT = ROOT / "operator_engine" / "backends" / "kube_client.py"
VERBS = {"create": "create", "read": "get", "list": "list", "delete": "delete", "patch": "patch"}
RESOURCES = {
    "job": ("batch", "jobs"),
    "pod": ("", "pods"),
    "pod_log": ("", "pods/log"),
    "network_policy": ("networking.k8s.io", "networkpolicies"),
}


def docs() -> list[dict[str, object]]:
    return [doc for doc in yaml.safe_load_all(RBAC.read_text()) if doc]


def test_the_sample_objects_validate_strictly() -> None:
    for doc in docs():
        kubernetes_validate.validate(doc, "1.30.0", strict=True)


def test_the_role_grants_exactly_what_the_client_calls() -> None:
    calls = re.findall(r"\.(create|read|list|delete|patch)_namespaced_(\w+?)\(", CLIENT.read_text())
    needed = {(*RESOURCES[resource], VERBS[verb]) for verb, resource in calls}
    assert len(needed) == 9, needed
    role = next(d for d in docs() if d["kind"] == "Role")
    granted = {
        (group, resource, verb)
        for rule in role["rules"]  # type: ignore[index]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }
    assert granted == needed
    assert role["metadata"]["namespace"] == "tidewater-jobs"  # type: ignore[index]


def test_job_pods_may_run_under_the_restricted_pod_security_standard() -> None:
    namespace = next(d for d in docs() if d["kind"] == "Namespace")
    labels = namespace["metadata"]["labels"]  # type: ignore[index]
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"
