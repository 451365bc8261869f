"""What the C2D v2 API knows of its jobs beyond the engine's row: free or paid, the order that
admitted it (``agreementId``), the resources and duration it was priced for.

Stored by :class:`datastore.node_records.NodeJobs`; written once when a job is submitted.
"""

from __future__ import annotations

from flask import current_app

from datastore.node_records import NodeJob, NodeJobs

__all__ = ["NodeJob", "NodeJobs", "node_jobs_of_app"]


def node_jobs_of_app() -> NodeJobs:
    """The app's :class:`NodeJobs`, built on first use."""
    found = current_app.extensions.get("tidewater_node_jobs")
    if found is None:
        found = NodeJobs(current_app.extensions["tidewater"].db)
        current_app.extensions["tidewater_node_jobs"] = found
    return found  # type: ignore[no-any-return]
