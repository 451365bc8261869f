"""The admin API: compute environments, batches and service info behind bearer tokens.

The blueprint lives here so its OpenAPI part is ``provider/openapi/admin.yaml``; the routes are
in :mod:`provider.admin.routes`.
"""

from flask import Blueprint

bp = Blueprint("admin", __name__)
