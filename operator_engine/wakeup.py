"""Wake-ups: within an engine, :class:`WakeSignal` (a job was queued, capacity was freed);
across processes, the API process that queues a job nudges the engine process of the same
store on this host, which otherwise finds the job at its next idle poll.

The channel is a Linux abstract Unix datagram socket named after the engine's scope (its store
and data dir): nothing on disk, no port, and a nudge nobody listens for is simply dropped. Only
one engine process per scope listens; others (and other hosts) keep polling.
"""

from __future__ import annotations

import logging
import socket
import sys
import threading
from collections.abc import Callable

log = logging.getLogger(__name__)


def _address(scope: str) -> str:
    return f"\0tidewater-wake-{scope}"


def nudge(scope: str) -> None:
    """Tell the engine listening for ``scope`` (if any) that a job is waiting."""
    if not sys.platform.startswith("linux"):
        return
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.setblocking(False)
            sock.sendto(b"1", _address(scope))
    except OSError:  # nobody listens, or its queue is full: it polls anyway
        pass


class WakeSignal:
    """Wakes an engine's idle workers; no nudge is lost between a worker's look for work and
    its wait (an :class:`threading.Event` cleared after the wait drops a nudge that comes in
    between). A worker notes :meth:`mark` before it looks and waits only while no
    nudge came since.

    >>> signal = WakeSignal()
    >>> seen = signal.mark()
    >>> signal.set()  # e.g. a job queued while the worker looked
    >>> signal.wait(seen, timeout=3600)  # returns at once
    True
    >>> signal.wait(signal.mark(), timeout=0)
    False
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._count = 0

    def set(self) -> None:
        """Nudge every idle worker."""
        with self._cond:
            self._count += 1
            self._cond.notify_all()

    def mark(self) -> int:
        """The nudges so far (note it before looking for work)."""
        with self._cond:
            return self._count

    def wait(self, since: int, timeout: float) -> bool:
        """Wait until a nudge after ``since`` (True) or ``timeout`` seconds (False)."""
        with self._cond:
            return self._cond.wait_for(lambda: self._count != since, timeout)


class WakeListener:
    """Calls ``on_wake`` for each nudge of ``scope`` (in a daemon thread) until :meth:`close`."""

    def __init__(self, scope: str, on_wake: Callable[[], None]) -> None:
        self.scope = scope
        self.on_wake = on_wake
        self._sock: socket.socket | None = None
        self._closed = threading.Event()

    def start(self) -> bool:
        """Listen; False when another engine of this scope already does (or not on Linux)."""
        if not sys.platform.startswith("linux"):
            return False
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            sock.bind(_address(self.scope))
        except OSError:
            sock.close()
            log.info("another engine of this store listens for new jobs; this one polls")
            return False
        sock.settimeout(0.5)
        self._sock = sock
        threading.Thread(target=self._listen, name="tidewater-wake", daemon=True).start()
        return True

    def _listen(self) -> None:
        sock = self._sock
        while sock is not None and not self._closed.is_set():
            try:
                sock.recv(64)
            except TimeoutError:
                continue
            except OSError:
                return
            self.on_wake()

    def close(self) -> None:
        self._closed.set()
        if self._sock is not None:
            self._sock.close()
            self._sock = None
