"""The few Kubernetes API calls the backend makes, behind one small class over the official
``kubernetes`` client (objects go in and come out as API-shaped dicts, camelCase).

:class:`KubeClient` is what :class:`~operator_engine.backends.kubernetes.KubernetesBackend`
talks to; unit tests give it a fake with the same methods. Every API failure becomes a
:class:`~operator_engine.backends.base.BackendError` here, at the boundary.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from operator_engine.backends.base import BackendError, BackendNotConfigured

T = TypeVar("T")
#: the label the Job controller puts on its pods
JOB_NAME_LABEL = "job-name"
MERGE_PATCH = "application/merge-patch+json"


def load_api_client(kubeconfig: str | None) -> Any:
    """An ``ApiClient`` of the in-cluster service account when running in a pod without a
    kubeconfig, else of ``kubeconfig`` (``None``: kubectl's default, ``~/.kube/config``)."""
    try:
        from kubernetes import client, config
    except ImportError as exc:  # the optional dependency: pip install 'tidewater[kubernetes]'
        raise BackendNotConfigured(
            "the kubernetes package is not installed: pip install 'tidewater[kubernetes]'"
        ) from exc
    configuration = client.Configuration()
    try:
        if kubeconfig is None and os.environ.get("KUBERNETES_SERVICE_HOST"):
            config.load_incluster_config(client_configuration=configuration)
        else:
            config.load_kube_config(config_file=kubeconfig, client_configuration=configuration)
    except (config.ConfigException, OSError, TypeError, ValueError) as exc:
        where = kubeconfig or "~/.kube/config (KUBECONFIG unset)"
        raise BackendNotConfigured(f"no usable Kubernetes configuration in {where}: {exc}") from exc
    return client.ApiClient(configuration)


class KubeClient:
    """Jobs, pods, pod logs and network policies of one namespace."""

    def __init__(self, api_client: Any, namespace: str) -> None:
        from kubernetes import client

        self.api_client = api_client
        self.namespace = namespace
        self.batch = client.BatchV1Api(api_client)
        self.core = client.CoreV1Api(api_client)
        self.net = client.NetworkingV1Api(api_client)

    def _call(self, what: str, call: Callable[[], T], *, missing_ok: bool = False) -> T | None:
        from kubernetes.client.exceptions import ApiException
        from urllib3.exceptions import HTTPError

        try:
            return call()
        except ApiException as exc:
            if missing_ok and exc.status == 404:
                return None
            raise BackendError(f"Kubernetes refused to {what}: {exc.status} {exc.reason}") from exc
        except (HTTPError, OSError) as exc:
            raise BackendError(f"the Kubernetes API server did not answer ({what}): {exc}") from exc

    def _plain(self, model: Any) -> dict[str, Any]:
        data: dict[str, Any] = self.api_client.sanitize_for_serialization(model)
        return data

    def ping(self) -> None:
        self._call("list pods", lambda: self.core.list_namespaced_pod(self.namespace, limit=1))

    def close(self) -> None:
        self.api_client.close()

    def create(self, body: dict[str, Any]) -> None:
        """Create a ``Job`` or a ``NetworkPolicy``."""
        ns = self.namespace
        # the client serializes a dict body as it is (its stubs name only the model classes)
        if body["kind"] == "Job":
            self._call("create a Job", lambda: self.batch.create_namespaced_job(ns, body))  # type: ignore[arg-type]
        else:
            self._call(
                "create a NetworkPolicy",
                lambda: self.net.create_namespaced_network_policy(ns, body),  # type: ignore[arg-type]
            )

    def delete(self, kind: str, name: str) -> None:
        """Delete a ``Job`` (its pods with it) or a ``NetworkPolicy``; gone already is fine."""
        ns = self.namespace
        if kind == "Job":
            self._call(
                "delete a Job",
                lambda: self.batch.delete_namespaced_job(
                    name, ns, propagation_policy="Background", grace_period_seconds=0
                ),
                missing_ok=True,
            )
        else:
            self._call(
                "delete a NetworkPolicy",
                lambda: self.net.delete_namespaced_network_policy(name, ns),
                missing_ok=True,
            )

    def job(self, name: str) -> dict[str, Any] | None:
        found = self._call(
            "read a Job",
            lambda: self.batch.read_namespaced_job(name, self.namespace),
            missing_ok=True,
        )
        return None if found is None else self._plain(found)

    def jobs(self, selector: str) -> list[dict[str, Any]]:
        found = self._call(
            "list Jobs",
            lambda: self.batch.list_namespaced_job(self.namespace, label_selector=selector),
        )
        return [self._plain(item) for item in getattr(found, "items", [])]

    def pod_of(self, job_name: str) -> dict[str, Any] | None:
        """The (newest) pod of Job ``job_name``, or None before it exists."""
        found = self._call(
            "list pods",
            lambda: self.core.list_namespaced_pod(
                self.namespace, label_selector=f"{JOB_NAME_LABEL}={job_name}"
            ),
        )
        pods = [self._plain(item) for item in getattr(found, "items", [])]
        pods.sort(key=lambda p: str(p.get("metadata", {}).get("creationTimestamp", "")))
        return pods[-1] if pods else None

    def label_pod(self, pod_name: str, labels: dict[str, str]) -> None:
        body = {"metadata": {"labels": labels}}
        self._call(
            "label a pod",
            # named: the client would otherwise send the object as a JSON Patch (a list)
            lambda: self.core.patch_namespaced_pod(
                pod_name, self.namespace, body, _content_type=MERGE_PATCH
            ),
        )

    def log_stream(self, pod_name: str, container: str) -> Iterator[bytes]:
        """The container's stdout and stderr as they come, until it ends."""
        response: Any = self._call(
            "follow a pod's log",
            lambda: self.core.read_namespaced_pod_log(
                pod_name, self.namespace, container=container, follow=True, _preload_content=False
            ),
        )
        try:
            yield from response.stream(64 * 1024)
        finally:
            response.release_conn()
