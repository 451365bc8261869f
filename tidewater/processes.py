"""``tidewater serve``'s process tree: the API server and the job engine never share a process.

::

    tidewater serve        supervisor: no app code, no threads; forwards signals,
    │                      restarts a dead engine, stops both on SIGTERM/SIGINT
    ├── gunicorn master ── HTTP worker process(es): Flask, request parsing, no job threads
    └── engine             worker threads: claim, run containers, heartbeat, sweep

A request that crashes an HTTP worker (the worst case being a C stack overflow) costs gunicorn
one worker, which it replaces; running jobs are untouched because their threads live in the
engine process. Each child is forked from the supervisor before any thread of the app exists
(only the log writer may run: it holds no lock across a fork, see
``provider.logs.BackgroundHandler``) and dies with it (``PR_SET_PDEATHSIG``), so killing the
supervisor never leaves an orphan engine.
"""

from __future__ import annotations

import ctypes
import logging
import os
import select
import signal
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field

log = logging.getLogger("tidewater.serve")

_PR_SET_PDEATHSIG = 1
#: Longest wait before restarting an engine that keeps dying (doubling from 1 s).
RESTART_BACKOFF_MAX = 30.0

Target = Callable[[Callable[[], None]], int]


def _die_with_parent(parent: int) -> None:
    """Ask the kernel to SIGTERM this process when ``parent`` dies (Linux)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError):  # not Linux: the supervisor's own stop still applies
        return
    if os.getppid() != parent:  # it died before the prctl took effect
        os.kill(os.getpid(), signal.SIGTERM)


@dataclass
class Child:
    """A process running ``target(ready)``; ``target`` calls ``ready()`` once it is up."""

    name: str
    target: Target
    pid: int = 0
    exit_code: int | None = None
    started_at: float = 0.0
    ready: bool = False
    #: Called with the pid once the child has ended and been reaped.
    on_exit: Callable[[int], None] | None = None
    _ready_fd: int = field(default=-1, repr=False)

    def start(self) -> None:
        parent = os.getpid()
        read_fd, write_fd = os.pipe()
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:  # the child: never returns into the caller's frames
            os.close(read_fd)
            code = 1
            try:
                for signum in (signal.SIGTERM, signal.SIGINT):
                    signal.signal(signum, signal.SIG_DFL)
                _die_with_parent(parent)
                code = self.target(lambda: _tell_ready(write_fd))
            except SystemExit as exc:  # gunicorn's processes leave through sys.exit
                code = exc.code if isinstance(exc.code, int) else int(exc.code is not None)
            except BaseException:
                traceback.print_exc()
            finally:
                logging.shutdown()  # os._exit skips atexit: write the log lines still queued
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        os.close(write_fd)
        self.pid, self.exit_code, self.ready = pid, None, False
        self.started_at = time.monotonic()
        self._ready_fd = read_fd
        os.set_blocking(read_fd, False)

    def poll(self) -> int | None:
        """The exit code once the child has ended (reaped here), else None."""
        if self.pid and self.exit_code is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.exit_code = os.waitstatus_to_exitcode(status)
                self._close_ready()
                if self.on_exit is not None:
                    self.on_exit(pid)
        if self._ready_fd >= 0:
            try:
                self.ready = bool(os.read(self._ready_fd, 1))
                self._close_ready()  # a byte (ready) or end of file (ended before ready)
            except BlockingIOError:
                pass
        return self.exit_code

    @property
    def running(self) -> bool:
        return self.pid != 0 and self.poll() is None

    def send(self, signum: int) -> None:
        if self.running:
            try:
                os.kill(self.pid, signum)
            except ProcessLookupError:
                pass

    def fileno(self) -> int:
        return self._ready_fd

    def _close_ready(self) -> None:
        if self._ready_fd >= 0:
            os.close(self._ready_fd)
            self._ready_fd = -1


def _tell_ready(fd: int) -> None:
    try:
        os.write(fd, b"1")
        os.close(fd)
    except OSError:
        pass


class Supervisor:
    """Runs ``api`` then (once it listens) ``engine``; see the module docstring.

    SIGTERM: the API finishes its requests (gunicorn's graceful stop) while the engine gives
    running algorithms ``grace`` seconds, then stops their containers (status 7). SIGINT, or a
    second signal to the supervisor: SIGINT to both, which stop at once (running containers are
    still stopped and recorded). The children may also get the signal directly (a stop of the
    whole process group); they treat a repeated SIGTERM as one.
    A child that outlives ``grace`` + ``hard_margin`` seconds of a stop is killed.
    """

    def __init__(self, api: Child, engine: Child, *, grace: float, hard_margin: float = 40.0):
        self.api = api
        self.engine = engine
        self.grace = grace
        self.hard_margin = hard_margin
        self._signals: list[int] = []
        self._stop_began: float | None = None
        self._engine_due: float | None = None
        self._backoff = 1.0
        self._engine_up = False

    def _on_signal(self, signum: int, _frame: object) -> None:
        self._signals.append(signum)

    def run(self) -> int:
        """Until both children have ended; returns the exit code of ``tidewater serve``."""
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self._on_signal)
        exit_code = 0
        self.api.start()
        while True:
            self._forward_signals()
            api_code = self.api.poll()
            if self._stop_began is None and api_code is not None:
                log.error("the API server exited with %s; stopping the engine", api_code)
                exit_code = api_code or 1
                self._begin_stop(signal.SIGTERM)
            if self._stop_began is None:
                exit_code = self._tend_engine() or exit_code
            elif not self.api.running and not self.engine.running:
                return exit_code
            elif time.monotonic() - self._stop_began > self.grace + self.hard_margin:
                for child in (self.api, self.engine):
                    if child.running:
                        log.error("%s did not stop in time; killing it", child.name)
                        child.send(signal.SIGKILL)
            self._wait(0.2)

    def _tend_engine(self) -> int:
        """Start the engine once the API listens; restart it (with backoff) when it dies."""
        if not self.api.ready:
            return 0
        now = time.monotonic()
        if self.engine.pid == 0:
            self.engine.start()
            return 0
        code = self.engine.poll()
        if code is None:
            self._engine_up = self._engine_up or self.engine.ready
            if self.engine.ready and now - self.engine.started_at > 60:
                self._backoff = 1.0
            return 0
        if not self._engine_up:
            log.error("the engine could not start (exit %s); stopping", code)
            self._begin_stop(signal.SIGTERM)
            return code or 1
        if self._engine_due is None:
            self._engine_due = now + self._backoff
            log.error(
                "the engine process exited with %s; restarting it in %.0f s (its jobs are "
                "recovered by the new engine's sweep)",
                code,
                self._backoff,
            )
            self._backoff = min(self._backoff * 2, RESTART_BACKOFF_MAX)
        elif now >= self._engine_due:
            self._engine_due = None
            self.engine.start()
        return 0

    def _forward_signals(self) -> None:
        while self._signals:
            signum = self._signals.pop(0)
            if self._stop_began is None:
                self._begin_stop(signum)
            else:  # a second signal: hurry both
                log.info("second signal: stopping now")
                self.api.send(signal.SIGINT)
                self.engine.send(signal.SIGINT)

    def _begin_stop(self, signum: int) -> None:
        self._stop_began = time.monotonic()
        how = "quick" if signum == signal.SIGINT else "graceful"
        log.info(
            "%s stop: the API finishes its requests; running algorithms %s",
            how,
            "are stopped now (status 7)"
            if signum == signal.SIGINT
            else f"get {self.grace:.0f} s (TIDEWATER_STOP_GRACE), then are stopped (status 7)",
        )
        self.api.send(signum)
        self.engine.send(signum)

    def _wait(self, seconds: float) -> None:
        fds = [c.fileno() for c in (self.api, self.engine) if c.fileno() >= 0]
        try:
            select.select(fds, [], [], seconds)
        except InterruptedError:
            pass
