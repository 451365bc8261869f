"""Tar streams of a job's folders, written without buffering whole files and read back safely.

:func:`stream` yields a POSIX tar of some top-level folders (regular files and folders only;
symlinks and devices are left out) chunk by chunk, for an HTTP response or a chunked upload.
:func:`extract` reads one from any stream into a folder, accepting only regular files and
folders under the expected top-level names — no absolute paths, ``..``, links or devices —
and stopping with :class:`TarRefused` past ``max_bytes`` or ``max_entries``.
"""

from __future__ import annotations

import os
import stat
import tarfile
from collections.abc import Iterable, Iterator
from pathlib import Path, PurePosixPath
from typing import IO, Any

BLOCK = tarfile.BLOCKSIZE
CHUNK = 1024 * 1024


class TarRefused(ValueError):
    """The stream is not an acceptable tar: ``too_large`` tells a size or count overrun."""

    def __init__(self, message: str, *, too_large: bool = False) -> None:
        super().__init__(message)
        self.too_large = too_large


def _walk(root: Path, top: str) -> Iterator[tuple[str, Path, os.stat_result]]:
    base = root / top
    try:
        info = base.lstat()
    except FileNotFoundError:
        return
    if not stat.S_ISDIR(info.st_mode):
        return
    yield top, base, info
    for dirpath, dirnames, filenames in os.walk(base):
        dirnames.sort()
        here = Path(dirpath)
        for name in sorted(dirnames) + sorted(filenames):
            path = here / name
            entry = path.lstat()
            if stat.S_ISDIR(entry.st_mode) or stat.S_ISREG(entry.st_mode):
                yield path.relative_to(root).as_posix(), path, entry


def stream(root: Path, tops: Iterable[str], *, exclude: Iterable[str] = ()) -> Iterator[bytes]:
    """A tar of ``root/<top>`` for each of ``tops`` (member names relative to ``root``),
    skipping members named in ``exclude``."""
    skip = set(exclude)
    for top in tops:
        for name, path, entry in _walk(root, top):
            if name in skip:
                continue
            info = tarfile.TarInfo(name)
            info.mtime = int(entry.st_mtime)
            if stat.S_ISDIR(entry.st_mode):
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                yield info.tobuf(tarfile.PAX_FORMAT)
                continue
            info.size, info.mode = entry.st_size, 0o644
            yield info.tobuf(tarfile.PAX_FORMAT)
            yield from _content(path, entry.st_size)
    yield b"\0" * (2 * BLOCK)


def _content(path: Path, size: int) -> Iterator[bytes]:
    """Exactly ``size`` bytes of ``path`` (zero-filled if it shrank), padded to a block."""
    left = size
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    with os.fdopen(fd, "rb") as handle:
        while left > 0:
            chunk = handle.read(min(CHUNK, left)) or b"\0" * min(CHUNK, left)
            left -= len(chunk)
            yield chunk
    if size % BLOCK:
        yield b"\0" * (BLOCK - size % BLOCK)


def _safe_name(name: str, tops: set[str]) -> PurePosixPath:
    path = PurePosixPath(name)
    if path.is_absolute() or ".." in path.parts or not path.parts or path.parts[0] not in tops:
        raise TarRefused(f"tar member {name!r} is outside {sorted(tops)}")
    return path


def extract(
    source: IO[bytes] | Any,
    dest: Path,
    tops: Iterable[str],
    *,
    max_bytes: int,
    max_entries: int = 100_000,
    protected: Iterable[str] = (),
) -> tuple[int, int]:
    """Extract the tar read from ``source`` into ``dest``; (files, bytes) written.

    Members must lie under one of ``tops``; a member named in ``protected`` (an existing file
    the sender may not replace) is refused, and so is any file that already exists."""
    allowed, keep = set(tops), set(protected)
    files = written = entries = 0
    try:
        with tarfile.open(fileobj=source, mode="r|") as archive:
            for member in archive:
                entries += 1
                if entries > max_entries:
                    raise TarRefused(f"more than {max_entries} entries", too_large=True)
                rel = _safe_name(member.name, allowed)
                target = dest.joinpath(*rel.parts)
                if member.isdir():
                    target.mkdir(parents=True, exist_ok=True, mode=0o755)
                    continue
                if not member.isreg():
                    raise TarRefused(f"tar member {member.name!r} is not a regular file")
                if rel.as_posix() in keep:
                    raise TarRefused(f"{member.name!r} may not be replaced")
                if written + member.size > max_bytes:
                    raise TarRefused(f"more than {max_bytes} bytes", too_large=True)
                target.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
                written += _write_member(archive, member, target)
                files += 1
    except tarfile.TarError as exc:
        raise TarRefused(f"not a readable tar stream: {exc}") from exc
    return files, written


def _write_member(archive: tarfile.TarFile, member: tarfile.TarInfo, target: Path) -> int:
    handle = archive.extractfile(member)
    if handle is None:
        raise TarRefused(f"tar member {member.name!r} has no content")
    try:
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
    except FileExistsError:
        raise TarRefused(f"{member.name!r} is sent twice or already exists") from None
    size = 0
    with os.fdopen(fd, "wb") as out:
        while chunk := handle.read(CHUNK):
            out.write(chunk)
            size += len(chunk)
    return size
