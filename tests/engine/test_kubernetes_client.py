"""The official ``kubernetes`` client as the backend drives it, against a fake API server on
loopback (REST paths, verbs, bodies and content types as a real API server receives them; the
pods it answers are the API-shaped fixtures). Not a cluster: what a cluster does with the
objects is the conformance suite's, on a real one."""

from __future__ import annotations

import io
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from flask import Flask, Response, request
from werkzeug.serving import make_server

from operator_engine.backends.base import ContainerSpec, Limits
from operator_engine.backends.kube_client import KubeClient, load_api_client
from operator_engine.backends.kubernetes import KubernetesBackend
from operator_engine.workspace import JobFolder
from tests.engine.test_kubernetes_backend import ALGO, IMAGE, JOB, fixture

NS = "tidewater-jobs"
JSON_PATCH = "application/json-patch+json"
PATCH_TYPES = (JSON_PATCH, "application/merge-patch+json", "application/strategic-merge-patch+json")
SCRIPT = ["fetching", "gating", "running", "publishing", "succeeded"]


class FakeApiServer:
    """Just the endpoints the backend calls, recording each request."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str, str, Any]] = []
        self.delete_args: list[dict[str, str]] = []
        self.objects: dict[tuple[str, str], dict[str, Any]] = {}
        self.script = list(SCRIPT)
        self.app = self._build()

    def _pod(self) -> dict[str, Any]:
        name = self.script.pop(0) if len(self.script) > 1 else self.script[0]
        pod = fixture(f"pod-{name}")
        job = self.objects[("jobs", f"tw-{JOB}")]
        pod["spec"] = {**job["spec"]["template"]["spec"], "nodeName": "worker-1"}
        return pod

    def _build(self) -> Flask:
        app = Flask("fake-kube-api")
        batch, net, core = (
            f"/apis/batch/v1/namespaces/{NS}",
            "/apis/networking.k8s.io/v1",
            "/api/v1",
        )

        @app.before_request
        def record() -> None:
            body = request.get_json(force=True, silent=True)
            self.requests.append((request.method, request.path, request.content_type or "", body))

        @app.post(f"{batch}/jobs")
        @app.post(f"{net}/namespaces/{NS}/networkpolicies")
        def create() -> Any:
            body = request.get_json(force=True)  # no Content-Type: JSON, as the API server reads it
            kind = "jobs" if body["kind"] == "Job" else "networkpolicies"
            self.objects[(kind, body["metadata"]["name"])] = body
            return body, 201

        @app.get(f"{batch}/jobs")
        def list_jobs() -> Any:
            items = [o for (kind, _n), o in self.objects.items() if kind == "jobs"]
            return {"apiVersion": "batch/v1", "kind": "JobList", "metadata": {}, "items": items}

        @app.get(f"{batch}/jobs/<name>")
        def read_job(name: str) -> Any:
            found = self.objects.get(("jobs", name))
            return (found, 200) if found else ({"kind": "Status", "code": 404}, 404)

        @app.delete(f"{batch}/jobs/<name>")
        @app.delete(f"{net}/namespaces/{NS}/networkpolicies/<name>")
        def delete(name: str) -> Any:
            self.delete_args.append(request.args.to_dict())
            kind = "jobs" if "/jobs/" in request.path else "networkpolicies"
            self.objects.pop((kind, name), None)
            return {"apiVersion": "v1", "kind": "Status", "status": "Success"}

        @app.get(f"{core}/namespaces/{NS}/pods")
        def list_pods() -> Any:
            alive = ("jobs", f"tw-{JOB}") in self.objects
            items = [self._pod()] if alive and request.args.get("limit") is None else []
            return {"apiVersion": "v1", "kind": "PodList", "metadata": {}, "items": items}

        @app.patch(f"{core}/namespaces/{NS}/pods/<name>")
        def patch_pod(name: str) -> Any:
            kind, body = request.content_type, request.get_json(force=True)
            if kind not in PATCH_TYPES or (kind == JSON_PATCH) != isinstance(body, list):
                return {"kind": "Status", "code": 415 if kind not in PATCH_TYPES else 400}, 400
            return self._pod()

        @app.get(f"{core}/namespaces/{NS}/pods/<name>/log")
        def log(name: str) -> Any:
            return Response(iter([b"line one\n", b"line two\n"]), mimetype="text/plain")

        return app


@pytest.fixture(name="api")
def api_fixture(tmp_path: Path) -> Iterator[tuple[FakeApiServer, str]]:
    fake = FakeApiServer()
    server = make_server("127.0.0.1", 0, fake.app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    config = tmp_path / "kubeconfig"
    config.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [
                    {"name": "c", "cluster": {"server": f"http://127.0.0.1:{server.port}"}}
                ],
                "users": [{"name": "u", "user": {"token": "t"}}],
                "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "x",
            }
        )
    )
    yield fake, str(config)
    server.shutdown()
    thread.join(timeout=10)


def test_a_job_through_the_official_client(tmp_path: Path, api: tuple[FakeApiServer, str]) -> None:
    fake, kubeconfig = api
    client = KubeClient(load_api_client(kubeconfig), NS)
    backend = KubernetesBackend(
        client, image=IMAGE, internal_url="http://10.0.0.5:8030", poll_seconds=0
    )
    backend.bind(scope="scope1", data_dir=tmp_path / "data")
    JobFolder.of(tmp_path / "data", JOB).create()
    backend.ping()
    spec = ContainerSpec(
        JOB, ALGO, "true", {}, Limits(cpu=1, memory=2**30, disk=10**6, duration=60)
    )
    area = SimpleNamespace(budget=10**6, max_entries=100, ready=lambda: None)
    cid = backend.start(spec, area)  # type: ignore[arg-type]
    sink = io.BytesIO()
    backend.follow_logs(cid, sink, 1000)
    info = backend.wait(cid)
    assert backend.containers(JOB) == [(cid, JOB)]
    backend.remove(cid)
    backend.close()

    assert (info.exit_code, info.oom_killed) == (0, False)
    assert sink.getvalue() == b"line one\nline two\n"
    calls = [(method, path) for method, path, _type, _body in fake.requests]
    net = f"/apis/networking.k8s.io/v1/namespaces/{NS}/networkpolicies"
    assert calls[1:4] == [
        ("POST", net),
        ("POST", net),
        ("POST", f"/apis/batch/v1/namespaces/{NS}/jobs"),
    ]
    patches = [(t, b) for m, _p, t, b in fake.requests if m == "PATCH"]
    assert [b["metadata"]["labels"]["tidewater.io/network"] for _t, b in patches] == [
        "closed",
        "transfer",
    ]
    assert {content_type for content_type, _b in patches} == {"application/merge-patch+json"}
    logs = [p for m, p, _t, _b in fake.requests if p.endswith("/log")]
    assert logs == [f"/api/v1/namespaces/{NS}/pods/tw-{JOB}-x7k2q/log"]
    deletes = [p.rsplit("/", 1)[-1] for m, p, _t, _b in fake.requests if m == "DELETE"]
    assert deletes == [f"tw-{JOB}", f"tw-{JOB}-deny", f"tw-{JOB}-transfer"]
    assert fake.delete_args[0] == {"propagationPolicy": "Background", "gracePeriodSeconds": "0"}
