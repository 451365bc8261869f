"""A job's one disk share in a host folder (the Docker and fake backends' :class:`RunArea`).

``/data/outputs``, ``/data/logs`` and the captured stdout/stderr (written by the engine into
``logs/algorithm.log``) share one budget: the environment's ``diskGB / maxJobs`` minus what the
job's inputs and algorithm took. Going past it ends the job at 42 and leaves nothing over the
share on disk. Two ways to hold it (``TIDEWATER_DISK_QUOTA``):

``loop`` (a real kernel limit; ``auto`` picks it when the engine runs as root with mount(8) and
  mkfs.ext4): an ext4 image file loop-mounted ``nosuid,nodev,noexec`` at ``<job>/work`` for
  the run; ``/data/outputs`` and ``/data/logs`` are its folders. The image is the budget plus
  :func:`slack` (ext4's own reserve and inode tables, and room to see a writer go past the
  budget): the kernel refuses any write beyond it (ENOSPC), so a writer can never exceed the
  share by more than the slack, and the engine, measuring the area every 50 ms, ends the job
  at 42 once the algorithm's data passes the budget. After the run the outputs (of a run that
  ended well) and the algorithm log are copied into the job folder, and the image is unmounted
  and deleted. :meth:`FolderWorkspace.open_run
  <operator_engine.backends.folder.FolderWorkspace.open_run>` makes and mounts the image in a
  thread (``prepare(..., background=True)``) while the backend creates the container: Docker
  checks that a bind mount's source exists when it creates a container but resolves the path
  when it starts it, so ``work/outputs`` and ``work/logs`` exist at once as empty folders only
  root can write (shadowed by the mount), and the backend starts the container only once
  :meth:`WritableArea.ready` says the image is mounted over ``work``.

``poll`` (no privileges): the host folders are mounted; the supervisor measures them every
  ``POLL_SECONDS`` and the log capture stops at the budget. A writer can go over the share by
  what it writes between two measurements (at most ``POLL_SECONDS`` of its write rate: about
  1 GB at 2 GB/s) before it is killed; then everything it wrote is deleted, so nothing over the
  share stays on disk.
"""

from __future__ import annotations

import logging
import os
import shutil
import stat
import subprocess
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from operator_engine.backends.base import BackendError
from operator_engine.workspace import (
    ALGORITHM_LOG,
    ENGINE_LOGS,
    JobFolder,
    drop_work_area,
    prepare_writable,
)

log = logging.getLogger(__name__)

POLL_SECONDS = 0.5
_TOOL_TIMEOUT = 60
_loop_failed = False  # auto mode saw a loop mount fail in this process


class QuotaError(BackendError):
    """The writable area could not be prepared (the message says why)."""


def loop_available() -> bool:
    """True when this process can make and mount ext4 images (root, mount, mkfs.ext4)."""
    return (
        os.geteuid() == 0
        and shutil.which("mount") is not None
        and shutil.which("umount") is not None
        and shutil.which("mkfs.ext4") is not None
        and Path("/dev/loop-control").exists()
    )


def choose_mode(setting: str) -> str:
    """``loop`` or ``poll`` under the ``TIDEWATER_DISK_QUOTA`` ``setting``."""
    if setting in ("poll", "loop"):
        return setting
    return "loop" if loop_available() else "poll"


def slack(budget: int) -> int:
    """How much larger than ``budget`` the ext4 image is: ext4 keeps up to 2 % (at most 16 MiB)
    for itself and needs inode tables; the rest lets the engine see the budget passed. It is
    also the most a writer can ever put on disk beyond its share (the kernel stops it there)."""
    return budget // 32 + 4 * 1024**2


def disk_used(root: Path, max_entries: int) -> tuple[int, int]:
    """(bytes, entries) under ``root`` without following links; stops after ``max_entries``."""
    total = entries = 0
    stack = [root]
    while stack and entries <= max_entries:
        try:
            with os.scandir(stack.pop()) as it:
                for entry in it:
                    entries += 1
                    try:
                        st = entry.stat(follow_symlinks=False)
                    except OSError:
                        continue
                    total += st.st_blocks * 512
                    if entry.is_dir(follow_symlinks=False):
                        stack.append(Path(entry.path))
        except OSError:
            continue
    return total, entries


def _run(*argv: str) -> None:
    try:
        subprocess.run(argv, check=True, capture_output=True, timeout=_TOOL_TIMEOUT)
    except subprocess.CalledProcessError as exc:
        message = (exc.stderr or b"").decode(errors="replace").strip() or f"exit {exc.returncode}"
        raise QuotaError(f"{argv[0]}: {message}") from None
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise QuotaError(f"{argv[0]}: {exc}") from None


@dataclass
class WritableArea:
    """Where the algorithm writes during the run, and how its share is held."""

    folder: JobFolder
    mode: str
    budget: int
    max_entries: int
    outputs: Path
    logs: Path
    baseline: int = 0  # loop: bytes the empty file system already uses
    #: loop, made in the background: the thread making and mounting the image, and the
    #: setting it was asked under (``auto`` falls back to polling when it fails)
    pending: threading.Thread | None = field(default=None, repr=False)
    setting: str = "loop"
    _error: QuotaError | None = field(default=None, repr=False)

    def ready(self) -> None:
        """Wait until the share is in place; :class:`QuotaError` when it cannot be (under
        ``auto`` the area polls the job's own folders instead, and :attr:`outputs` and
        :attr:`logs` change to them). Asked again, the same answer."""
        pending, self.pending = self.pending, None
        if pending is not None:
            pending.join()
            if self._error is not None:
                drop_work_area(self.folder)  # what the failed making left (here, not before)
                if self.setting == "auto":
                    global _loop_failed
                    log.warning("disk quota: loop mounts fail here; polling (%s)", self._error)
                    _loop_failed = True
                    self.mode, self.outputs, self.logs = (
                        "poll",
                        self.folder.outputs,
                        self.folder.logs,
                    )
        if self._error is not None and self.mode == "loop":
            raise self._error

    def _make(self) -> None:
        """The background half of :func:`prepare`: make and mount the image over ``work``
        (a failure is left for :meth:`ready` to clean up: the container may be being created
        with the folders it would remove)."""
        try:
            self.baseline = _make_image(self.folder, self.budget, self.max_entries)
        except Exception as exc:  # whatever it is, the area is not there
            self._error = QuotaError(f"cannot prepare a {self.budget}-byte ext4 area: {exc}")

    def open_log(self) -> BinaryIO:
        """The algorithm log in the area, opened for appending, unbuffered, never through a link."""
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW
        return os.fdopen(os.open(self.logs / ALGORITHM_LOG, flags, 0o644), "ab", buffering=0)

    @property
    def check_seconds(self) -> float:
        """How often :meth:`is_exceeded` should be asked (a statvfs is cheap; a walk is not)."""
        return 0.05 if self.mode == "loop" else POLL_SECONDS

    def is_exceeded(self) -> bool:
        """True when the algorithm used up (loop) or went past (poll) its share."""
        if self.mode == "loop":
            return _fs_used(self.outputs) - self.baseline > self.budget or _no_inodes(self.outputs)
        used = entries = 0
        for root in (self.outputs, self.logs):
            size, count = disk_used(root, self.max_entries)
            used, entries = used + size, entries + count
        return used > self.budget or entries > self.max_entries

    def release(self, *, keep_outputs: bool) -> None:
        """End the run's area: keep the algorithm log, the outputs only if ``keep_outputs``,
        and nothing else the algorithm wrote (its own files in ``/data/logs`` are never
        published)."""
        try:
            self.ready()
        except QuotaError:
            drop_work_area(self.folder)  # never mounted: nothing of the run to keep
            return
        if self.mode == "loop":
            try:
                _copy_file(self.logs / ALGORITHM_LOG, self.folder.log(ALGORITHM_LOG))
                if keep_outputs:
                    _copy_tree(self.outputs, self.folder.outputs)
            finally:
                # unmounted and deleted while the job's next stages go on; the job's
                # remove_inputs (before it ends) waits for it
                drop_work_area(self.folder, background=True)
            return
        for child in self.logs.iterdir():
            if child.name not in ENGINE_LOGS:
                _remove(child)
        if not keep_outputs:
            for child in self.outputs.iterdir():
                _remove(child)


def settle(folder: JobFolder) -> None:
    """Drop an area left by a run that did not end through the run stage (its worker was
    lost), keeping the algorithm log it captured."""
    if os.path.ismount(folder.work):
        try:
            _copy_file(folder.work / "logs" / ALGORITHM_LOG, folder.log(ALGORITHM_LOG))
        except OSError:
            log.warning("cannot keep the algorithm log of %s", folder.root, exc_info=True)
    drop_work_area(folder)


def prepare(
    folder: JobFolder, budget: int, max_entries: int, setting: str, *, background: bool = False
) -> WritableArea:
    """The writable area of a run with ``budget`` bytes and ``max_entries`` files. Under
    ``auto``, a loop mount that fails (no loop device, no mount privilege) falls back to
    polling, for this job and the rest of the process; under ``loop`` it is an error.
    ``background``: the image is made and mounted in a thread, :meth:`WritableArea.ready`
    waits for it (and says whether it failed); its folders exist at once, root's only."""
    global _loop_failed
    mode = "poll" if setting == "auto" and _loop_failed else choose_mode(setting)
    if mode == "loop" and background:
        return _loop_area_later(folder, budget, max_entries, setting)
    if mode == "loop":
        try:
            return _loop_area(folder, budget, max_entries)
        except QuotaError:
            if setting == "loop":
                raise
            log.warning("disk quota: loop mounts fail here; polling instead", exc_info=True)
            _loop_failed = True
    return WritableArea(folder, "poll", budget, max_entries, folder.outputs, folder.logs)


def _loop_area(folder: JobFolder, budget: int, max_entries: int) -> WritableArea:
    drop_work_area(folder)
    try:
        folder.work.mkdir(mode=0o700)
        baseline = _make_image(folder, budget, max_entries)
    except (OSError, QuotaError) as exc:
        drop_work_area(folder)
        raise QuotaError(f"cannot prepare a {budget}-byte ext4 area: {exc}") from None
    work = folder.work
    return WritableArea(
        folder, "loop", budget, max_entries, work / "outputs", work / "logs", baseline
    )


def _loop_area_later(
    folder: JobFolder, budget: int, max_entries: int, setting: str
) -> WritableArea:
    """The area of :func:`_loop_area` with its image made in a thread: ``work/outputs`` and
    ``work/logs`` exist now as empty folders only root can write into (what Docker checks when
    it creates a container), which the mount then shadows."""
    work = folder.work
    drop_work_area(folder)
    try:
        work.mkdir(mode=0o700)
        for name in ("outputs", "logs"):
            (work / name).mkdir(mode=0o700)
    except OSError as exc:
        drop_work_area(folder)
        raise QuotaError(f"cannot prepare a {budget}-byte ext4 area: {exc}") from None
    area = WritableArea(
        folder, "loop", budget, max_entries, work / "outputs", work / "logs", setting=setting
    )
    area.pending = threading.Thread(target=area._make, name=f"disk-{folder.root.name[:12]}")
    area.pending.start()
    return area


def _make_image(folder: JobFolder, budget: int, max_entries: int) -> int:
    """Make the ext4 image of ``budget`` bytes with the algorithm's writable folders already in
    it (``mkfs.ext4 -d`` from a template: the mount shows them at once, never an empty file
    system) and mount it over the existing ``work`` folder; the bytes the empty file system
    uses."""
    work, image, template = folder.work, folder.work_image, folder.work_template
    try:
        shutil.rmtree(template, ignore_errors=True)
        template.mkdir(mode=0o755)
        prepare_writable(template / "outputs", template / "logs")
        fd = os.open(image, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        os.ftruncate(fd, budget + slack(budget))
        os.close(fd)
        _run(
            "mkfs.ext4",
            "-q",
            "-F",
            "-O",
            "^has_journal",
            "-m",
            "0",
            "-N",
            str(max(max_entries + 16, 64)),
            "-E",
            "root_owner=0:0,nodiscard",
            "-d",
            str(template),
            str(image),
        )
        # the type named: mount(8) does not probe the image for it (half the mount's time)
        _run("mount", "-t", "ext4", "-o", "loop,nosuid,nodev,noexec", str(image), str(work))
        os.chmod(work, 0o755)
        shutil.rmtree(work / "lost+found", ignore_errors=True)
        return _fs_used(work)
    except OSError as exc:  # the caller drops what is left
        raise QuotaError(f"{exc}") from None
    finally:
        shutil.rmtree(template, ignore_errors=True)


def _fs_used(path: Path) -> int:
    st = os.statvfs(path)
    return (st.f_blocks - st.f_bfree) * st.f_frsize


def _no_inodes(path: Path) -> bool:
    return os.statvfs(path).f_ffree == 0


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def _copy_file(source: Path, target: Path) -> None:
    """Copy a regular file without following links (``target`` replaced)."""
    src = os.open(source, os.O_RDONLY | os.O_NOFOLLOW)
    with os.fdopen(src, "rb") as reader:
        if not stat.S_ISREG(os.fstat(reader.fileno()).st_mode):
            return
        target.unlink(missing_ok=True)
        dst = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
        with os.fdopen(dst, "wb") as writer:
            shutil.copyfileobj(reader, writer, 1024 * 1024)


def _copy_tree(source: Path, target: Path) -> None:
    """Copy what the algorithm left in ``source``: folders, regular files, and symbolic links
    and FIFOs as what they are (the egress stage reports and drops them); nothing else."""
    for entry in sorted(os.scandir(source), key=lambda e: e.name):
        st = entry.stat(follow_symlinks=False)
        dest = target / entry.name
        if stat.S_ISLNK(st.st_mode):
            os.symlink(os.readlink(entry.path), dest)
        elif stat.S_ISDIR(st.st_mode):
            dest.mkdir(mode=0o755)
            _copy_tree(Path(entry.path), dest)
        elif stat.S_ISREG(st.st_mode):
            _copy_file(Path(entry.path), dest)
        elif stat.S_ISFIFO(st.st_mode):
            os.mkfifo(dest, 0o644)
