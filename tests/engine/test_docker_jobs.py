"""Real Docker: jobs through the engine end to end, each failure code, hostile algorithms."""

from __future__ import annotations

import hashlib
import socket
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import pytest

from operator_engine.api import Engine
from operator_engine.backends.docker import DockerBackend
from operator_engine.models import Job
from operator_engine.statuses import JobStatus
from tests.engine.conftest import FileServer
from tests.engine.helpers import env, request, settings_for
from tidewater.engine_config import build_engine

pytestmark = pytest.mark.integration
DATA = b"x,y\n1,2\n3,4\n"


@pytest.fixture
def make_engine(tmp_path: Path, docker_client: docker.DockerClient) -> Iterator[Any]:
    engines: list[Engine] = []

    def build(allow_non_public_ip: bool = True, **env_over: Any) -> Engine:
        settings = settings_for(
            tmp_path, [env(**env_over)], allow_non_public_ip=allow_non_public_ip
        )
        engine = build_engine(settings, backend=DockerBackend(docker_client, pull=False))
        engines.append(engine)
        return engine

    yield build
    for engine in engines:
        engine.shutdown()
        for cid, _job in engine.backend.containers():
            engine.backend.remove(cid)


def image_parts(image: str) -> tuple[str, str]:
    name, tag = image.rsplit(":", 1)
    return name, tag


def run_one(engine: Engine, server: FileServer, image: str, code: str, **kw: Any) -> Job:
    server.files.setdefault("/data.csv", DATA)
    name, tag = image_parts(image)
    kw.setdefault("files", [{"type": "url", "url": server.url("/data.csv"), "method": "GET"}])
    kw.setdefault("entrypoint", "python3 $ALGO")
    job = engine.submit(request(rawcode=code, image=name, tag=tag, **kw))
    engine.run_until_idle(timeout=120)
    done = engine.get(job.job_id)
    assert done is not None
    return done


ALGO_CSV = """
import json, os
dids = json.loads(os.environ["DIDS"])
rows = open(f"/data/inputs/{dids[0]}/0").read().splitlines()
custom = json.load(open("/data/inputs/algoCustomData.json"))
with open("/data/outputs/result.csv", "w") as out:
    out.write(f"rows,{len(rows)},{custom['factor']}\\n")
print("read", len(rows), "rows")
"""


def test_python_job_reaches_70_with_verified_results(
    make_engine: Any, file_server: FileServer, python_image: str, docker_client: docker.DockerClient
) -> None:
    engine = make_engine()
    checksum = docker_client.images.get(python_image).id
    job = run_one(
        engine, file_server, python_image, ALGO_CSV, customdata={"factor": 7}, checksum=checksum
    )
    assert job.status is JobStatus.FINISHED, job.reason
    events = [to for _f, to, _d in engine.store.events(job.job_id)]
    assert events == [1, 10, 20, 30, 40, 50, 60, 70]
    by_type = {r.type: r for r in job.results}
    assert [r.filename for r in job.results if r.type == "output"] == ["result.csv"]
    assert set(by_type) == {"output", "algorithmLog", "configrationLog", "publishLog"}
    for index, result in enumerate(job.results):
        path, entry = engine.open_result(job.job_id, index)
        body = path.read_bytes()
        assert entry.index == index
        assert (len(body), hashlib.sha256(body).hexdigest()) == (result.filesize, result.sha256)
    assert engine.open_result(job.job_id, 0)[0].read_text() == "rows,3,7\n"
    log = engine.open_result(job.job_id, 1)[0].read_text()
    assert "read 3 rows" in log
    assert job.to_ocean()["dateFinished"] is not None
    assert not engine.backend.containers(job.job_id)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize(
    ("case", "status", "reason_part"),
    [
        ("unreachable_dataset", 31, "unreachable"),
        ("loopback_refused", 31, "non-public"),
        ("algorithm_404", 32, "HTTP 404"),
        ("wrong_digest", 32, "does not match"),
        ("exit_3", 41, "exit code 3"),
        ("memory_hog", 41, "out of memory"),
        ("time_limit", 7, "time limit"),
        ("outputs_over_cap", 42, "allows at most"),
    ],
)
def test_failures_land_on_their_code(
    case: str,
    status: int,
    reason_part: str,
    make_engine: Any,
    file_server: FileServer,
    python_image: str,
) -> None:
    kw: dict[str, Any] = {}
    code = "print('ok')"
    engine_kw: dict[str, Any] = {}
    if case == "unreachable_dataset":
        kw["files"] = [{"type": "url", "url": f"http://127.0.0.1:{closed_port()}/x"}]
    elif case == "loopback_refused":
        engine_kw["allow_non_public_ip"] = False
    elif case == "algorithm_404":
        kw["algo_files"] = [{"type": "url", "url": file_server.url("/missing.py")}]
    elif case == "wrong_digest":
        kw["checksum"] = "sha256:" + "0" * 64
    elif case == "exit_3":
        code = "import sys; print('bye'); sys.exit(3)"
    elif case == "memory_hog":
        engine_kw["ramGB"] = 0.125
        code = "blocks = []\nwhile True:\n    blocks.append(bytearray(16 * 1024 * 1024))"
    elif case == "time_limit":
        engine_kw["maxJobDuration"] = 2
        code = "import time; print('sleeping', flush=True); time.sleep(60)"
    elif case == "outputs_over_cap":
        engine_kw["egress"] = {"maxBytes": 1000, "maxFiles": 5}
        code = "open('/data/outputs/big', 'wb').write(b'x' * 5000)"
    engine = make_engine(**engine_kw)
    job = run_one(engine, file_server, python_image, code, **kw)
    assert int(job.status) == status, job.reason
    assert job.reason and reason_part in job.reason, job.reason
    assert job.date_finished is not None
    publish_log = [r for r in job.results if r.type == "publishLog"]
    assert publish_log, job.results
    index = job.results.index(publish_log[0])
    assert reason_part in engine.open_result(job.job_id, index)[0].read_text()
    if case == "exit_3":
        assert job.to_ocean()["terminationDetails"] == {"exitCode": 3, "OOMKilled": False}
    if case == "memory_hog":
        assert job.oom_killed and job.to_ocean()["terminationDetails"]["OOMKilled"] is True
    if case == "time_limit":
        assert job.stopreq == 2
        log = engine.open_result(job.job_id, 0)[0].read_text()
        assert "sleeping" in log  # partial logs kept
    if case == "loopback_refused":
        assert not file_server.requests  # nothing was sent
    assert not engine.backend.containers(job.job_id)
    assert not list((engine.services.folder(job.job_id).root).glob("inputs/*"))


HOSTILE_NET = """
import socket, sys
try:
    socket.create_connection(("127.0.0.1", 80), timeout=2)
    print("CONNECTED"); sys.exit(1)
except OSError as exc:
    print("refused:", exc)
ifaces = [l.split(":")[0].strip() for l in open("/proc/net/dev").read().splitlines()[2:]]
print("ifaces", ifaces)
sys.exit(0 if ifaces == ["lo"] else 2)
"""

HOSTILE_FS = """
import os, sys
bad = []
for path in ["/etc/evil", "/usr/evil", "/evil", "/data/inputs/evil", "/data/transformations/x",
             "/data/ddos/x"]:
    try:
        open(path, "w").write("x")
        bad.append(path)
    except OSError:
        pass
dids = __import__("json").loads(os.environ["DIDS"])
os.symlink("/etc/passwd", "/data/outputs/passwd")
os.symlink(f"/data/inputs/{dids[0]}/0", "/data/outputs/input-copy")
os.symlink("..", "/data/outputs/up")
open("/data/outputs/fine.txt", "w").write("fine")
try:
    os.setuid(0); bad.append("setuid")
except OSError:
    pass
print("uid", os.getuid(), "bad", bad)
sys.exit(1 if bad or os.getuid() == 0 else 0)
"""


def test_network_is_absent(make_engine: Any, file_server: FileServer, python_image: str) -> None:
    engine = make_engine()
    job = run_one(engine, file_server, python_image, HOSTILE_NET)
    log = engine.open_result(job.job_id, [r.type for r in job.results].index("algorithmLog"))
    assert job.status is JobStatus.FINISHED, (job.reason, log[0].read_text())
    assert "refused:" in log[0].read_text()


def test_filesystem_is_contained_and_links_not_published(
    make_engine: Any, file_server: FileServer, python_image: str
) -> None:
    engine = make_engine()
    job = run_one(engine, file_server, python_image, HOSTILE_FS)
    assert job.status is JobStatus.FINISHED, job.reason
    outputs = [r.filename for r in job.results if r.type == "output"]
    assert outputs == ["fine.txt"]
    publish = engine.open_result(job.job_id, len(job.results) - 1)[0].read_text()
    for name in ("passwd", "input-copy", "up"):
        assert f"{name}: symbolic link" in publish


def test_fork_bomb_hits_the_pids_limit(
    make_engine: Any, file_server: FileServer, busybox_image: str
) -> None:
    """Bounded: at most 400 background processes are attempted; the limit (128) stops it."""
    engine = make_engine(maxJobDuration=30)
    code = "n=0; while [ $n -lt 400 ]; do sleep 10 & n=$((n+1)); done; echo started=$n"
    job = run_one(engine, file_server, busybox_image, code, entrypoint="sh $ALGO")
    log = engine.open_result(job.job_id, [r.type for r in job.results].index("algorithmLog"))
    text = log[0].read_text()
    assert "can't fork" in text, text
    assert "started=400" not in text
    assert job.status is JobStatus.RUN_FAILED, job.reason
    assert not engine.backend.containers(job.job_id)


SHARE_MIB = 16
WRITERS = {
    "logs": "dd if=/dev/zero of=/data/logs/big bs=1M count=64; echo done",
    "stdout": "yes 0123456789abcdef | head -c 67108864; echo done",
    "outputs": "dd if=/dev/zero of=/data/outputs/big bs=1M count=64; echo done",
}


def _on_disk(root: Path) -> tuple[int, int]:
    """(bytes in files, bytes allocated) under ``root``, links not followed."""
    entries = [p.lstat() for p in root.rglob("*")]
    return (
        sum(st.st_size for st in entries if stat.S_ISREG(st.st_mode)),
        sum(st.st_blocks * 512 for st in entries),
    )


@pytest.mark.parametrize("mode", ["loop", "poll"])
@pytest.mark.parametrize("path", list(WRITERS))
def test_writing_past_the_disk_share_ends_42_and_leaves_nothing_over_it(
    mode: str,
    path: str,
    tmp_path: Path,
    docker_client: docker.DockerClient,
    file_server: FileServer,
    busybox_image: str,
) -> None:
    """/data/outputs, /data/logs and stdout share one disk share (diskGB / maxJobs)."""
    from operator_engine.backends.quota import loop_available

    if mode == "loop" and not loop_available():
        pytest.skip("loop-mounted quotas need root, mount(8) and mkfs.ext4")
    share = SHARE_MIB * 1024**2
    settings = settings_for(
        tmp_path,
        [env(diskGB=SHARE_MIB / 1024, maxJobs=1, egress={"maxBytes": share, "maxFiles": 20})],
        allow_non_public_ip=True,
    )
    backend = DockerBackend(docker_client, pull=False, disk_quota=mode)
    engine = build_engine(settings, backend=backend)
    try:
        job = run_one(engine, file_server, busybox_image, WRITERS[path], entrypoint="sh $ALGO")
    finally:
        engine.shutdown()
    assert job.status is JobStatus.EGRESS_EXCEEDED, job.reason
    assert job.reason and "disk share" in job.reason, job.reason
    folder = engine.services.folder(job.job_id)
    assert not folder.work.exists() and not folder.work_image.exists()
    in_files, allocated = _on_disk(folder.root)
    engine_logs = sum(folder.log(n).stat().st_size for n in ("configure.log", "publish.log"))
    assert in_files - engine_logs <= share
    assert allocated <= share + 64 * 1024  # + the engine's folders and its two small logs
    assert not list(folder.outputs.iterdir())
    assert sorted(p.name for p in folder.logs.iterdir()) == [
        "algorithm.log",
        "configure.log",
        "publish.log",
    ]
    assert f"({mode})" in folder.log("configure.log").read_text()
    assert not engine.backend.containers(job.job_id)
