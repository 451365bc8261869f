"""The engine's configuration, built from tidewater's settings: the one bridge between the
application shell and :mod:`operator_engine` (which imports nothing from ``tidewater``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from operator_engine.backends.base import DEFAULT_PLATFORM
from operator_engine.config import EngineConfig
from operator_engine.storage import StorageConfig, rpc_urls_of
from tidewater.settings import Settings

if TYPE_CHECKING:  # the provider's routes import this module: the engine only when built
    from operator_engine.api import Engine
    from operator_engine.backends.base import Backend, BackendRegistry


def storage_config(settings: Settings, *, timeout: float | None = None) -> StorageConfig:
    """How files are opened under ``settings`` (NETWORK_URL: one URL or a chain map);
    ``timeout`` defaults to TIDEWATER_FETCH_TIMEOUT."""
    urls, default = rpc_urls_of(settings.network_url)
    extra, _ = rpc_urls_of(settings.network_urls)
    return StorageConfig(
        allow_non_public=settings.allow_non_public_ip,
        ipfs_gateway=settings.ipfs_gateway,
        arweave_gateway=settings.arweave_gateway,
        rpc_urls={**urls, **extra},
        default_rpc_url=default,
        timeout=settings.fetch_timeout if timeout is None else timeout,
    )


def engine_config(settings: Settings) -> EngineConfig:
    """The engine's part of ``settings``."""
    keys = dict(settings.provider_private_keys)
    if settings.provider_private_key:
        keys[0] = settings.provider_private_key
    return EngineConfig(
        data_dir=settings.data_dir,
        db_url=settings.db_url,
        environments_file=settings.environments_file,
        storage=storage_config(settings),
        pull_images=settings.pull_images,
        disk_quota=settings.disk_quota,
        kubeconfig=settings.kubeconfig,
        kubernetes_namespace=settings.kubernetes_namespace,
        kubernetes_image=settings.kubernetes_image,
        kubernetes_internal_url=settings.kubernetes_internal_url,
        credentials_key=settings.credentials_key,
        network_url=settings.network_url,
        address_file=settings.address_file,
        provider_keys=keys,
        lease_seconds=settings.lease_seconds,
        poll_seconds=settings.poll_seconds,
        sweep_seconds=settings.sweep_seconds,
        fetch_timeout=settings.fetch_timeout,
    )


def build_engine(
    settings: Settings,
    *,
    backend: Backend | BackendRegistry | None = None,
    platform: str = DEFAULT_PLATFORM,
    **changes: Any,
) -> Engine:
    """An engine configured by ``settings`` (``changes``: :class:`EngineConfig` fields to
    override, e.g. a test's ``poll_seconds``), its store's tables created; the backend of
    ``platform`` unless ``backend`` (or a registry of them) is given."""
    from operator_engine.api import Engine

    config = engine_config(settings).with_(**changes)
    return Engine.from_config(config, backend=backend, platform=platform)
