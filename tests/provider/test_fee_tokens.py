"""Fee tokens at the routes: every environment announces a real ERC-20, and a chain that does not
answer a fee-token check makes the request 503 (an outage), never a 500."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from flask.testing import FlaskClient

from operator_engine.api import Engine
from tests.provider.core_support import (  # noqa: F401 (fixtures)
    CHAIN_ID,
    ENVS,
    FAKE_OCEAN,
    app_fixture,
    client_fixture,
    engine_fixture,
    settings_fixture,
)
from tidewater.settings import Settings


def test_environments_announce_their_checked_fee_token(client: FlaskClient) -> None:
    envs = client.get("/api/services/computeEnvironments").get_json()[str(CHAIN_ID)]
    assert {e["feeToken"].lower() for e in envs} == {FAKE_OCEAN}


def test_an_uncheckable_fee_token_is_503(
    client: FlaskClient, settings: Settings, engine: Engine
) -> None:
    def chain_down(_address: str) -> bytes:
        raise ConnectionError("refused")

    engine.registry.fee_tokens.get_code = chain_down  # type: ignore[union-attr]
    assert settings.environments_file is not None
    changed = [dict(ENVS[0], feeToken="0x" + "7e" * 20)]  # a token never checked before
    Path(settings.environments_file).write_text(json.dumps(changed))
    reply = client.get("/api/services/computeEnvironments")
    assert reply.status_code == 503
    assert "cannot check feeToken" in reply.get_json()["error"]


def test_the_start_up_check_loads_no_metrics_library() -> None:
    # serve checks environments before it sets PROMETHEUS_MULTIPROC_DIR: importing
    # prometheus_client that early would leave the gunicorn workers' metrics unmerged
    code = (
        "import sys, provider.fees, tidewater.commands.serve; "
        "assert 'prometheus_client' not in sys.modules"
    )
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
