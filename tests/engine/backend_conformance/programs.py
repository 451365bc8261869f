"""Algorithms written once, run on every backend: a :class:`Program` is a list of steps that
compiles to a busybox ``sh`` script (real containers run it as the job's raw code) and that the
fake backend interprets in Python after reading that same script from the job's staged
``algorithm`` volume (so staging is exercised on every backend)."""

from __future__ import annotations

import json
import shlex
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from operator_engine.backends.base import ContainerSpec, Volume

#: the first dataset's folder name in ``inputs`` (``DIDS`` is a JSON list of one name here)
_FIRST_DID = 'd=$(echo "$DIDS" | tr -d \'[]" \')'


@dataclass(frozen=True)
class Step:
    def shell(self) -> str:
        """The step as busybox ``sh`` (what real containers run)."""
        raise NotImplementedError


def _first_did(spec: ContainerSpec) -> str:
    names: list[str] = json.loads(spec.environment["DIDS"])
    return names[0]


def _write_x(path: Path, size: int) -> None:
    with open(path, "wb") as out:
        left = size
        while left > 0:
            out.write(b"x" * min(left, 1 << 20))
            left -= min(left, 1 << 20)


@dataclass(frozen=True)
class Print(Step):
    """Print a line on stdout."""

    text: str

    def shell(self) -> str:
        return f"echo {shlex.quote(self.text)}"


#: what :class:`Copy` copies: (its path in the container, its path among the fake's volumes)
SOURCES: dict[str, tuple[str, Callable[[dict[Volume, Path], str], Path]]] = {
    "input": ("$INPUTS/$d/0", lambda dirs, did: dirs["inputs"] / did / "0"),
    "ddo": ("/data/ddos/$d", lambda dirs, did: dirs["ddos"] / did),
    "custom": (
        "$INPUTS/algoCustomData.json",
        lambda dirs, _did: dirs["inputs"] / "algoCustomData.json",
    ),
}


@dataclass(frozen=True)
class Copy(Step):
    """Copy the first dataset's first file (``input``), its DDO (``ddo``) or the algorithm's
    custom data (``custom``) into ``outputs/<name>``."""

    source: str
    name: str

    def shell(self) -> str:
        return f'{_FIRST_DID}; cat "{SOURCES[self.source][0]}" > "$OUTPUTS/{self.name}"'


@dataclass(frozen=True)
class Write(Step):
    """Write ``size`` bytes of ``x`` into ``<volume>/<name>`` (a failed write goes on)."""

    name: str
    size: int
    volume: Volume = "outputs"

    def shell(self) -> str:
        var = {"outputs": "$OUTPUTS", "logs": "$LOGS"}[self.volume]
        return f'yes x | tr -d "\\n" | head -c {self.size} > "{var}/{self.name}" || echo failed'


@dataclass(frozen=True)
class Flood(Step):
    """Print ``size`` bytes on stdout."""

    size: int

    def shell(self) -> str:
        return f"yes 0123456789abcdef | head -c {self.size}"


@dataclass(frozen=True)
class ExitWith(Step):
    code: int

    def shell(self) -> str:
        return f"exit {self.code}"


@dataclass(frozen=True)
class ExhaustMemory(Step):
    """Grow a string until the memory limit kills the algorithm."""

    def shell(self) -> str:
        return 'x=x; while :; do x="$x$x"; done'


@dataclass(frozen=True)
class SleepUntilKilled(Step):
    def shell(self) -> str:
        return "sleep 600"


@dataclass(frozen=True)
class CheckSandbox(Step):
    """Exit non-zero (naming the breach) when the algorithm runs as root, can write its root
    file system, its read-only volumes or outside ``/tmp`` as executable; else write
    ``sandboxed`` into ``outputs/<name>``. Real backends only: the fake isolates nothing."""

    name: str

    def shell(self) -> str:
        checks = [
            ('[ "$(id -u)" != 0 ]', "root"),
            ("! touch /evil 2>/dev/null", "writable root file system"),
            ('! touch "$INPUTS/evil" 2>/dev/null', "writable inputs"),
            ("! touch /data/transformations/evil 2>/dev/null", "writable algorithm"),
            ("! touch /data/ddos/evil 2>/dev/null", "writable ddos"),
            ("cp /bin/busybox /tmp/x 2>/dev/null; ! /tmp/x true 2>/dev/null", "executable /tmp"),
        ]
        lines = [
            f"{test} || {{ echo {shlex.quote('breach: ' + what)}; exit 9; }}"
            for test, what in checks
        ]
        return "\n".join([*lines, f'echo sandboxed > "$OUTPUTS/{self.name}"'])


@dataclass(frozen=True)
class Program:
    steps: tuple[Step, ...]

    def script(self) -> str:
        return "".join(f"{step.shell()}\n" for step in self.steps)


def interpret(
    program: Program, dirs: dict[Volume, Path], spec: ContainerSpec, killed: threading.Event
) -> tuple[int, bool, bytes]:
    """Run ``program`` as the fake backend's algorithm: (exit code, OOM-killed, stdout)."""
    out = bytearray()
    for step in program.steps:
        if isinstance(step, Print):
            out += f"{step.text}\n".encode()
        elif isinstance(step, Flood):
            out += (b"0123456789abcdef\n" * (step.size // 17 + 1))[: step.size]
        elif isinstance(step, Copy):
            source = SOURCES[step.source][1](dirs, _first_did(spec))
            (dirs["outputs"] / step.name).write_bytes(source.read_bytes())
        elif isinstance(step, Write):
            try:
                _write_x(dirs[step.volume] / step.name, step.size)
            except OSError:
                out += b"failed\n"
        elif isinstance(step, ExitWith):
            return step.code, False, bytes(out)
        elif isinstance(step, ExhaustMemory):
            return 137, True, bytes(out)
        elif isinstance(step, SleepUntilKilled):
            killed.wait(600)
            return 137, False, bytes(out)
    return 0, False, bytes(out)
