"""Leases: who holds a job, and when its holder counts as dead.

A worker id is ``host:pid-starttime:n:random``. A job's lease is lost at once when its worker
ran on this host in a process that no longer exists, and for workers on other hosts (sharing
PostgreSQL) when the lease expiry its worker stored has passed (each worker stores its own
lease length's expiry, so a worker with a shorter lease setting never takes a live job).
"""

from __future__ import annotations

import os
import socket
import threading
import uuid
from datetime import UTC, timedelta
from typing import Any

from operator_engine.models import utcnow

HOST = socket.gethostname()

_active: set[str] = set()
_active_lock = threading.Lock()


def worker_id(index: int) -> str:
    """A new id for worker ``index`` of this process."""
    return f"{HOST}:{process_id()}:{index}:{uuid.uuid4().hex[:8]}"


def hold(worker: str) -> None:
    """Mark ``worker`` as live in this process (its jobs are never taken over)."""
    with _active_lock:
        _active.add(worker)


def release(worker: str) -> None:
    with _active_lock:
        _active.discard(worker)


def _process_start(pid: int) -> str | None:
    """The kernel's start time of ``pid`` (None: no such live process; zombies count as dead).
    With the pid it identifies a process even after the pid is reused."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            fields = handle.read().rsplit(")", 1)[-1].split()
    except OSError:
        return None
    return None if fields[0] in ("Z", "X") else fields[19]


def process_id() -> str:
    """This process as ``pid-starttime`` (computed each time: a forked child is its own)."""
    return f"{os.getpid()}-{_process_start(os.getpid())}"


def _aware(moment: Any) -> Any:
    return moment if moment is None or moment.tzinfo else moment.replace(tzinfo=UTC)


def worker_is_dead(row: Any, lease_seconds: float) -> bool:
    """True when the lease of ``row`` (``worker_id``, ``heartbeat_at``, ``lease_expires_at``)
    can be taken over. On this host the worker's process is checked directly (alive, even if
    slow to heartbeat: not taken over; gone: at once); elsewhere the expiry the holder stored
    must have passed (rows from before expiries were stored: heartbeat + ``lease_seconds``)."""
    worker_id, heartbeat_at = row.worker_id, _aware(row.heartbeat_at)
    if worker_id is None or heartbeat_at is None:
        return True
    with _active_lock:
        if worker_id in _active:
            return False
    parts = worker_id.split(":")
    if len(parts) >= 2 and parts[0] == HOST:
        if parts[1] == process_id():
            return True  # this process, but no active worker: a previous engine's job
        pid, _, start = parts[1].partition("-")
        if pid.isdigit():
            return bool(_process_start(int(pid)) != start)
    expiry = _aware(getattr(row, "lease_expires_at", None))
    if expiry is None:
        expiry = heartbeat_at + timedelta(seconds=lease_seconds)
    return bool(expiry < utcnow())
