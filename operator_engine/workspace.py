"""A job's folder on the host (docs/protocol.md §10 layout) and its engine-written logs.

``<data_dir>/jobs/<job_id>/`` holds ``inputs/``, ``transformations/``, ``ddos/`` (mounted
read-only), ``outputs/`` (owned by the algorithm user) and ``logs/`` (sticky, world-writable:
the algorithm may add files but can neither replace nor alter the engine's own logs, which are
created before the container starts). The job folder itself is 0700: other host users cannot
read a dataset copy. ``files.json`` (0600) holds the job's decrypted file objects from submit
until the inputs are removed (see :mod:`operator_engine.file_objects`).
"""

from __future__ import annotations

import ctypes
import functools
import logging
import os
import re
import shutil
import subprocess
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

ALGORITHM_UID = 65534
ALGORITHM_LOG = "algorithm.log"
CONFIGURE_LOG = "configure.log"
PUBLISH_LOG = "publish.log"
FILE_OBJECTS = "files.json"
ENGINE_LOGS = (ALGORITHM_LOG, CONFIGURE_LOG, PUBLISH_LOG)
_WORK = "work"
_WORK_IMAGE = "work.img"
_WORK_TEMPLATE = "work.tpl"
log = logging.getLogger(__name__)
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")


class UnsafeName(ValueError):
    """A DID or name that cannot be a single path component."""


def did_dirname(did: str) -> str:
    """``did:op:abc`` -> ``abc``, refusing anything that is not one safe path component."""
    name = did[len("did:op:") :] if did.startswith("did:op:") else did
    if not _SAFE_NAME.match(name) or name in (".", ".."):
        raise UnsafeName(f"DID {did!r} cannot name a folder")
    return name


def check_name(name: str) -> str:
    """``name`` if it can be one path component of a job's file (not empty, ``.``, ``..``,
    nor holding ``/`` or NUL), else :class:`UnsafeName`."""
    if name in ("", ".", "..") or "/" in name or "\0" in name:
        raise UnsafeName(f"{name!r} cannot name a file")
    return name


def jobs_root(data_dir: Path) -> Path:
    return data_dir / "jobs"


@functools.lru_cache(maxsize=64)
def _resolved_jobs_root(data_dir: Path) -> Path:
    """:func:`jobs_root` with every symlink resolved (once per data dir: each ``resolve`` is a
    ``stat`` per path component, and every result download asks)."""
    return jobs_root(data_dir).resolve()


@dataclass(frozen=True)
class JobFolder:
    root: Path

    @classmethod
    def of(cls, data_dir: Path, job_id: str) -> JobFolder:
        return cls(_resolved_jobs_root(data_dir) / job_id)

    @property
    def inputs(self) -> Path:
        return self.root / "inputs"

    @property
    def transformations(self) -> Path:
        return self.root / "transformations"

    @property
    def algorithm(self) -> Path:
        return self.transformations / "algorithm"

    @property
    def ddos(self) -> Path:
        return self.root / "ddos"

    @property
    def outputs(self) -> Path:
        return self.root / "outputs"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    def log(self, name: str) -> Path:
        return self.logs / name

    @property
    def work(self) -> Path:
        """Mount point of the run's size-limited area (:mod:`operator_engine.backends.quota`)."""
        return self.root / _WORK

    @property
    def work_image(self) -> Path:
        return self.root / _WORK_IMAGE

    @property
    def work_template(self) -> Path:
        """What the area's file system is made from (its writable folders, while mkfs runs)."""
        return self.root / _WORK_TEMPLATE

    def live_algorithm_log(self) -> Path:
        """Where the algorithm log is being written now: in the run's disk-share area while
        one is mounted, else in ``logs/`` (the area's log is copied there when the run ends)."""
        in_area = self.work / "logs" / ALGORITHM_LOG
        return in_area if in_area.is_file() else self.log(ALGORITHM_LOG)

    def create(self) -> None:
        """(Re)create the tree empty, with the engine's logs in place (the file objects saved
        at submit stay)."""
        self.root.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(self.root.parent, 0o700)
        self.root.mkdir(mode=0o700, exist_ok=True)
        os.chmod(self.root, 0o700)
        drop_work_area(self)
        for child in self.root.iterdir():
            if child.name == FILE_OBJECTS and not child.is_symlink():
                continue
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child)
            else:
                child.unlink()
        for sub in (self.inputs, self.transformations, self.ddos):
            sub.mkdir(mode=0o755)
        prepare_writable(self.outputs, self.logs, ENGINE_LOGS)

    def remove_inputs(self) -> None:
        """Drop the dataset copy, algorithm, DDOs and file objects once the job is over."""
        drop_work_area(self)
        for sub in (self.inputs, self.transformations, self.ddos):
            shutil.rmtree(sub, ignore_errors=True)
        (self.root / FILE_OBJECTS).unlink(missing_ok=True)

    def remove(self) -> None:
        drop_work_area(self)
        shutil.rmtree(self.root, ignore_errors=True)

    def exists(self) -> bool:
        return self.root.exists()


def prepare_writable(
    outputs: Path, logs: Path, engine_logs: tuple[str, ...] = (ALGORITHM_LOG,)
) -> None:
    """The algorithm's writable folders: ``outputs`` owned by the algorithm user; ``logs``
    sticky and world-writable with the engine's logs created first (so the algorithm can
    neither replace nor alter them)."""
    outputs.mkdir(mode=0o700)
    try:
        os.chown(outputs, ALGORITHM_UID, ALGORITHM_UID)
    except PermissionError:  # engine not root: let the algorithm user write anyway
        os.chmod(outputs, 0o777)
    logs.mkdir()
    os.chmod(logs, 0o1777)
    for name in engine_logs:
        fd = os.open(logs / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
        os.close(fd)


#: job folder -> the thread dropping its area in the background (drop_work_area)
_dropping: dict[Path, threading.Thread] = {}
_dropping_lock = threading.Lock()


def drop_work_area(folder: JobFolder, *, background: bool = False) -> None:
    """Unmount and delete the run's size-limited area, if one is left (a lazy unmount when a
    container still holds it: the kernel frees it once that is gone). ``background``: in a
    thread of its own (the run's end, once what it keeps is copied out); every later drop of
    the same folder (``remove_inputs`` before a job ends, ``create``, ``remove``) waits for
    it first, so a job never ends with its area still there."""
    with _dropping_lock:
        pending = _dropping.pop(folder.root, None)
    if pending is not None:
        pending.join()
    if not background:
        _drop(folder)
        return

    def drop() -> None:
        try:
            _drop(folder)
        finally:
            with _dropping_lock:
                if _dropping.get(folder.root) is thread:
                    del _dropping[folder.root]

    thread = threading.Thread(target=drop, name=f"drop-{folder.root.name[:12]}")
    with _dropping_lock:
        _dropping[folder.root] = thread
    thread.start()


def _drop(folder: JobFolder) -> None:
    work = folder.work
    if os.path.ismount(work) and not _unmount(work):
        log.warning("cannot unmount %s", work)
        return
    if work.is_dir() and not work.is_symlink() and not os.path.ismount(work):
        shutil.rmtree(work, ignore_errors=True)
    folder.work_image.unlink(missing_ok=True)
    if folder.work_template.is_dir() and not folder.work_template.is_symlink():
        shutil.rmtree(folder.work_template, ignore_errors=True)


_MNT_DETACH = 2  # umount2(2): detach now, free once the last user is gone ("umount -l")


def _unmount(point: Path) -> bool:
    """Unmount ``point`` with umount2(2), lazily when it is busy (no umount(8) process per
    job); the loop device ``mount -o loop`` set up goes with it (autoclear). On a libc without
    umount2, umount(8)."""
    umount2 = getattr(_libc(), "umount2", None)
    if umount2 is None:
        return _umount_tool(point)
    path = os.fsencode(point)
    return any(umount2(path, flags) == 0 for flags in (0, _MNT_DETACH))


def _umount_tool(point: Path) -> bool:
    for argv in (["umount", str(point)], ["umount", "-l", str(point)]):
        try:
            done = subprocess.run(argv, capture_output=True, timeout=60, check=False)
        except (OSError, subprocess.TimeoutExpired):
            continue
        if done.returncode == 0:
            return True
    return False


@functools.cache
def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def append_log(path: Path, text: str) -> None:
    """Append timestamped lines to an engine log (never through a symlink)."""
    if not path.parent.exists():
        return
    stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    lines = "".join(f"{stamp} {line}\n" for line in text.splitlines() or [""])
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o644)
    except OSError:
        return
    with os.fdopen(fd, "a") as handle:
        handle.write(lines)
