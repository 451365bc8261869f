"""``ProviderClient.download_result`` against a real threaded server: streamed, hashed on the
way, and refused (file removed) when the sha256 is not the listed one or the file cannot be
written."""

from __future__ import annotations

import errno
import hashlib
import threading
from pathlib import Path
from typing import Any

import pytest
from eth_account.signers.local import LocalAccount
from werkzeug.serving import make_server

from operator_engine.api import Engine
from tests.provider.core_support import (  # noqa: F401 (fixtures)
    FileServer,
    app_fixture,
    consumer_fixture,
    engine_fixture,
    files_fixture,
    settings_fixture,
    submit,
)
from tidewater.client import ProviderClient, ProviderHTTPError


def test_client_download_streams_and_checks_sha256(
    app: Any, engine: Engine, consumer: LocalAccount, files: FileServer, tmp_path: Path
) -> None:
    job = submit(engine, consumer.address, files)
    result = engine.get(job.job_id).results[0]  # type: ignore[union-attr]
    server = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    client = ProviderClient(f"http://127.0.0.1:{server.server_port}")
    try:
        path = client.download_result(
            consumer, job.job_id, 0, tmp_path / "ok", expect_sha256=result.sha256
        )
        assert hashlib.sha256(path.read_bytes()).hexdigest() == result.sha256
        with pytest.raises(ProviderHTTPError, match="sha256"):
            client.download_result(consumer, job.job_id, 0, tmp_path / "bad", expect_sha256="00")
        assert not any((tmp_path / "bad").iterdir())  # nothing unverified is left behind
        full = tmp_path / "full"  # the result's name leads to a device where writes fail
        full.mkdir()
        (full / result.filename).symlink_to("/dev/full")
        with pytest.raises(OSError) as failed:
            client.download_result(consumer, job.job_id, 0, full, expect_sha256=result.sha256)
        assert failed.value.errno == errno.ENOSPC
        assert not any(full.iterdir())
    finally:
        client.close()
        server.shutdown()
        server.server_close()
