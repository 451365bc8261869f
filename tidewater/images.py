"""Local algorithm images for tests, benchmarks and the demo, built without a registry.

This machine cannot pull images, so tidewater builds its own small ones with ``docker import``:

* ``tidewater/busybox:<hash>`` -- Debian's ``busybox-static`` binary and its applet links;
* ``tidewater/python3:<hash>`` -- a ``debootstrap --variant=minbase --include=python3`` root;
* ``tidewater/python3-plot:<hash>`` -- the same with Debian's ``python3-matplotlib`` (the demo's
  algorithm draws its chart with it).

Each tag is a hash of what goes into the image (the busybox binary's bytes, or the debootstrap
recipe), so a rebuild happens only when the content would change. Both images get a ``nobody``
user (65534) so algorithms run unprivileged.
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

import docker
import docker.errors

from tidewater.settings import DEBIAN_MIRROR

BUSYBOX_BINARY = Path("/bin/busybox")
PYTHON_SUITE = "bookworm"
PYTHON_MIRROR = os.environ.get("TIDEWATER_DEBIAN_MIRROR", DEBIAN_MIRROR)
PYTHON_RECIPE = f"debootstrap --variant=minbase --include=python3 {PYTHON_SUITE} v1"
PLOT_PACKAGES = "python3,python3-matplotlib"
PLOT_RECIPE = f"debootstrap --variant=minbase --include={PLOT_PACKAGES} {PYTHON_SUITE} v1"

_PASSWD = "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/sh\n"
_GROUP = "root:x:0:\nnogroup:x:65534:\n"


class ImageBuildError(RuntimeError):
    """An image could not be built; the message names the missing tool or failing step."""


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:12]


def _present(client: docker.DockerClient, tag: str) -> bool:
    try:
        client.images.get(tag)
    except docker.errors.ImageNotFound:
        return False
    return True


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes, mode: int = 0o644) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = mode
    tar.addfile(info, io.BytesIO(data))


def _add_dir(tar: tarfile.TarFile, name: str, mode: int = 0o755) -> None:
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE
    info.mode = mode
    tar.addfile(info)


def _busybox_applets(binary: Path) -> list[str]:
    out = subprocess.run([str(binary), "--list"], capture_output=True, text=True, check=True)
    return [name for name in out.stdout.split() if name and name != "busybox"]


def ensure_busybox_image(client: docker.DockerClient, binary: Path = BUSYBOX_BINARY) -> str:
    """Return the tag of the busybox image, importing it first if it is not present."""
    if not binary.exists():
        raise ImageBuildError(
            f"{binary} not found: install Debian's busybox-static (apt-get install busybox-static)"
        )
    data = binary.read_bytes()
    tag = f"tidewater/busybox:{_digest(data)}"
    if _present(client, tag):
        return tag
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for folder in ("bin", "etc", "tmp", "data"):
            _add_dir(tar, folder, 0o1777 if folder == "tmp" else 0o755)
        _add_bytes(tar, "bin/busybox", data, 0o755)
        for applet in _busybox_applets(binary):
            link = tarfile.TarInfo(f"bin/{applet}")
            link.type = tarfile.SYMTYPE
            link.linkname = "busybox"
            tar.addfile(link)
        _add_bytes(tar, "etc/passwd", _PASSWD.encode())
        _add_bytes(tar, "etc/group", _GROUP.encode())
    _import(client, buf.getvalue(), tag)
    return tag


def python_image_tag() -> str:
    """The tag the Python image has (or will have): a hash of its recipe."""
    return f"tidewater/python3:{_digest(PYTHON_RECIPE.encode())}"


def ensure_python_image(client: docker.DockerClient) -> str:
    """Return the tag of the Python 3 image, building it with debootstrap (~40 s) if needed."""
    return _ensure_debootstrap_image(client, python_image_tag(), "python3")


def plot_image_tag() -> str:
    """The tag of the Python 3 + matplotlib image (the demo's): a hash of its recipe."""
    return f"tidewater/python3-plot:{_digest(PLOT_RECIPE.encode())}"


def ensure_plot_image(client: docker.DockerClient) -> str:
    """Return the tag of the Python 3 + matplotlib image, building it if needed (~5 min)."""
    return _ensure_debootstrap_image(client, plot_image_tag(), PLOT_PACKAGES)


def _ensure_debootstrap_image(client: docker.DockerClient, tag: str, packages: str) -> str:
    if _present(client, tag):
        return tag
    if shutil.which("debootstrap") is None:
        raise ImageBuildError("debootstrap not found: apt-get install debootstrap")
    with tempfile.TemporaryDirectory(prefix="tidewater-rootfs-") as tmp:
        root = Path(tmp) / "root"
        result = subprocess.run(
            [
                "debootstrap",
                "--variant=minbase",
                f"--include={packages}",
                PYTHON_SUITE,
                str(root),
                PYTHON_MIRROR,
            ],
            capture_output=True,
            text=True,
        )
        if result.returncode != 0:
            tail = (result.stderr or result.stdout).strip().splitlines()[-3:]
            raise ImageBuildError("debootstrap failed: " + " | ".join(tail))
        for cache in ("var/cache/apt/archives", "var/lib/apt/lists"):
            shutil.rmtree(root / cache, ignore_errors=True)
        tar_path = Path(tmp) / "rootfs.tar"
        subprocess.run(["tar", "-C", str(root), "-cf", str(tar_path), "."], check=True)
        _import(client, tar_path.read_bytes(), tag)
    return tag


def _import(client: docker.DockerClient, tar_bytes: bytes, tag: str) -> None:
    repository, _, version = tag.partition(":")
    # docker-py's import_image needs a file or URL; the low-level API takes bytes directly.
    client.api.import_image_from_data(tar_bytes, repository=repository, tag=version)
    if not _present(client, tag):
        raise ImageBuildError(f"docker import did not produce {tag}")
