"""The Docker SDK's low-level client, set up for many short calls per job.

docker-py keys its Unix-socket connection pools by the whole request URL, so every call that
names a new container (create, start, wait, inspect, remove) opens a new connection to the
daemon; and with ``trust_env`` each call reads the process environment for proxies, which a
Unix socket never uses. :func:`tune` gives a Unix-socket client one pool (connections reused
like docker-py's TCP clients do) and no environment lookups. Other transports are left as
they are. :func:`stream_client` is the client the log streams attach with.
"""

from __future__ import annotations

from typing import Any

from docker import APIClient
from docker.transport import UnixHTTPAdapter
from docker.utils import kwargs_from_env

_POOL_KEY = "http+docker://localhost"


class OnePoolUnixAdapter(UnixHTTPAdapter):  # type: ignore[misc]
    """A Unix-socket adapter with a single connection pool for every request URL."""

    def get_connection(self, url: Any, proxies: Any = None) -> Any:
        return super().get_connection(_POOL_KEY, proxies)


def tune(api: APIClient) -> APIClient:
    """Reuse connections and skip proxy lookups on ``api`` when it talks over a Unix socket."""
    adapter: Any = getattr(api, "_custom_adapter", None)
    if type(adapter) is UnixHTTPAdapter:
        one = OnePoolUnixAdapter(
            adapter.socket_path, timeout=adapter.timeout, max_pool_size=adapter.max_pool_size
        )
        api.mount("http+docker://", one)
        api._custom_adapter = one
        adapter.close()
        api.trust_env = False  # proxies, netrc and CA settings mean nothing on a Unix socket
    return api


class _NoTtyClient(APIClient):  # type: ignore[misc]
    """Attaches to the engine's own containers, which never have a TTY: ``attach`` need not
    inspect the container to find out (docker-py's ``_check_is_tty``)."""

    def _check_is_tty(self, container: Any) -> bool:
        return False


def stream_client() -> APIClient:
    """A client without a read timeout for log streams (they last as long as the job; the
    supervisor ends a run by killing its container, which ends the stream)."""
    return tune(_NoTtyClient(timeout=None, **kwargs_from_env()))
