"""Every blueprint the provider serves, in registration order (:func:`provider.app.create_app`
imports this when it builds an app: the route modules import :mod:`provider.app` themselves)."""

from __future__ import annotations

from flask import Blueprint

from provider import console, node
from provider.admin import routes as admin
from provider.routes import (
    access,
    aquarius,
    compute_start,
    decrypt,
    encrypt,
    environments,
    files,
    initialize,
    internal_transfer,
    jobs,
    nonce,
    openapi,
    receipts,
    results,
    root,
)

#: The V4 API (root … compute_start), the Kubernetes jobs' data transfers (``/internal``), the
#: admin API, the C2D v2 API (``/node``), the console.
BLUEPRINTS: tuple[Blueprint, ...] = (
    root.bp,
    nonce.bp,
    encrypt.bp,
    decrypt.bp,
    jobs.bp,
    results.bp,
    receipts.bp,
    environments.bp,
    files.bp,
    access.bp,
    aquarius.bp,
    openapi.bp,
    initialize.bp,
    compute_start.bp,
    internal_transfer.bp,
    admin.bp,
    node.bp,
    console.bp,
)
