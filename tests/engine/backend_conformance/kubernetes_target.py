"""The Kubernetes conformance target: only on a real cluster (``TIDEWATER_TEST_KUBECONFIG``).

Needs, besides the kubeconfig (a disposable cluster: kind, k3d…, with a NetworkPolicy-enforcing
CNI), the settings a real deployment needs: ``TIDEWATER_KUBERNETES_IMAGE`` (the tidewater image
by digest, pullable by the cluster), ``TIDEWATER_KUBERNETES_INTERNAL_URL`` (where the cluster's
pods reach *this* machine), ``TIDEWATER_KUBERNETES_NAMESPACE`` (the Role of
deploy/kubernetes/rbac.yaml or more), and ``TIDEWATER_TEST_KUBE_BUSYBOX``, a busybox image by
digest. The target serves the provider's internal transfer endpoints from the engine's data dir
on ``TIDEWATER_TEST_KUBE_LISTEN`` (default ``0.0.0.0:<the internal URL's port>``) while it runs.
Any of these missing: the tests skip with the reason (never a CI failure: no cluster there).
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from urllib.parse import urlsplit

import pytest
from flask import Flask
from werkzeug.serving import make_server

from operator_engine.backends.kube_client import KubeClient, load_api_client
from operator_engine.backends.kubernetes import KubernetesBackend
from provider.errors import register_error_handlers
from provider.routes import internal_transfer
from tests.engine.backend_conformance.targets import Target

NEEDED = (
    "TIDEWATER_KUBERNETES_IMAGE",
    "TIDEWATER_KUBERNETES_INTERNAL_URL",
    "TIDEWATER_TEST_KUBE_BUSYBOX",
)


def transfer_app(data_dir: Path) -> Flask:
    """Just the provider's internal transfer endpoints, over ``data_dir``."""
    app = Flask("tidewater-transfer")
    app.extensions["tidewater"] = SimpleNamespace(settings=SimpleNamespace(data_dir=data_dir))
    register_error_handlers(app)
    app.register_blueprint(internal_transfer.bp)
    return app


class ServedKubernetesBackend(KubernetesBackend):
    """The backend, plus the transfer endpoints served from its data dir once bound."""

    listen: tuple[str, int] = ("0.0.0.0", 8030)
    server: Any = None

    def bind(self, *, scope: str, data_dir: Path) -> None:
        super().bind(scope=scope, data_dir=data_dir)
        if self.server is None:
            self.server = make_server(*self.listen, transfer_app(data_dir), threaded=True)
            threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        if self.server is not None:
            self.server.shutdown()
        super().close()


def make_target(request: pytest.FixtureRequest, kubeconfig: str) -> Target:
    missing = [name for name in NEEDED if not os.environ.get(name)]
    if missing:
        pytest.skip(f"the Kubernetes target also needs {', '.join(missing)}")
    url = os.environ["TIDEWATER_KUBERNETES_INTERNAL_URL"].rstrip("/")
    host, _, port = (os.environ.get("TIDEWATER_TEST_KUBE_LISTEN") or "").rpartition(":")
    listen = (host or "0.0.0.0", int(port or urlsplit(url).port or 80))
    namespace = os.environ.get("TIDEWATER_KUBERNETES_NAMESPACE") or "tidewater-jobs"
    backends: list[ServedKubernetesBackend] = []

    def make_backend() -> ServedKubernetesBackend:
        client = KubeClient(load_api_client(kubeconfig), namespace)
        backend = ServedKubernetesBackend(
            client, image=os.environ["TIDEWATER_KUBERNETES_IMAGE"], internal_url=url
        )
        backend.listen = listen
        backends.append(backend)
        return backend

    def cleanup() -> None:
        for backend in backends:
            backend.close()

    busybox = os.environ["TIDEWATER_TEST_KUBE_BUSYBOX"]
    return Target("kubernetes", "kubernetes", make_backend, (busybox, "latest"), cleanup)
