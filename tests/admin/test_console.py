"""The operator console's server side: page, tickets, live feed, snapshot and admin stop."""

from __future__ import annotations

import json
import time

import pytest
from flask import Flask

from datastore.jobs import JobStore
from operator_engine.statuses import JobStatus
from provider import console
from provider.admin import tokens
from provider.admin.tokens import TokenStore
from tests.admin.conftest import Admin, env_body, submit


@pytest.fixture
def console_app(app: Flask) -> Flask:
    app.register_blueprint(console.bp)
    return app


def test_the_page_and_its_files_are_served_without_a_cdn(console_app: Flask) -> None:
    client = console_app.test_client()
    page = client.get("/console")
    assert page.status_code == 200 and page.mimetype == "text/html"
    html = page.get_data(as_text=True)
    assert 'src="/console/console.js"' in html and "http" not in html.replace('xmlns="http', "")
    assert "script-src 'self'" in page.headers["Content-Security-Policy"]
    script = client.get("/console/console.js")
    assert script.status_code == 200 and "EventSource" in script.get_data(as_text=True)
    assert client.get("/console/console.css").status_code == 200
    missing = client.get("/console/secrets.txt")
    assert missing.status_code == 404 and missing.json is not None and "error" in missing.json


def test_a_ticket_opens_the_feed_and_dies_with_its_token(
    console_app: Flask, admin: Admin, store: JobStore, token: str
) -> None:
    client = console_app.test_client()
    assert client.get("/api/console/events").status_code == 403
    assert client.post("/api/console/ticket").status_code == 403  # the admin API's bearer
    made = admin.post("/api/console/ticket")
    assert made.status_code == 200 and made.json is not None and made.json["expiresIn"] == 60
    ticket = made.json["ticket"]
    assert token not in ticket
    forged = ticket[:-4] + ("0000" if not ticket.endswith("0000") else "1111")
    assert client.get("/api/console/events", query_string={"ticket": forged}).status_code == 403
    feed = client.get("/api/console/events", query_string={"ticket": ticket})
    assert feed.status_code == 200 and feed.mimetype == "text/event-stream"
    feed.close()
    TokenStore(store.engine).revoke("test")
    again = client.get("/api/console/events", query_string={"ticket": ticket})
    assert again.status_code == 403 and again.json is not None


def test_an_expired_ticket_is_refused(store: JobStore, token: str) -> None:
    tokens_ = TokenStore(store.engine)
    ticket = tokens_.ticket(token)
    token_id = ticket.split(".")[0]
    old = tokens._ticket(token_id, tokens_.rows.live_hash(token_id) or "", int(time.time()) - 1)
    assert tokens_.check_ticket(ticket) and not tokens_.check_ticket(old)
    assert not tokens_.check_ticket("") and not tokens_.check_ticket("a.b.c")


def test_the_feed_sends_a_snapshot_of_envs_and_jobs(
    console_app: Flask, admin: Admin, store: JobStore
) -> None:
    assert admin.post("/api/compute-envs", json=env_body("small")).status_code == 200
    env_id = admin.get("/api/compute-envs").json["computeEnvs"][0]["id"]  # type: ignore[index]
    live, done = submit(store, env_id), submit(store, env_id)
    store.transition(done, None, JobStatus.STOPPED, reason="stopped by its owner", stopreq=1)
    ticket = admin.post("/api/console/ticket").json["ticket"]  # type: ignore[index]
    feed = console_app.test_client().get("/api/console/events", query_string={"ticket": ticket})
    chunks = iter(feed.response)
    assert next(chunks).startswith(b"retry:")
    event = next(chunks).decode()
    feed.close()
    assert event.startswith("event: snapshot\ndata: ")
    view = json.loads(event.split("data: ", 1)[1])
    [env] = [e for e in view["environments"] if e["id"] == env_id]
    assert env["id"] == env_id and env["state"] == "available" and env["queued"] == 1
    assert [j["jobId"] for j in view["running"]] == [live]
    assert view["running"][0]["owner"] == "0xabab…abab" and view["running"][0]["stage"]
    [finished] = view["finished"]
    assert finished["jobId"] == done and not finished["succeeded"]
    assert finished["reason"] == "stopped by its owner" and finished["resultBytes"] == 0
    assert len(view["chart"]) == 60 and view["chart"][-1]["jobs"] == 1
    assert "request" not in event and "files" not in event


def test_admin_stop_needs_an_engine_and_a_known_job(admin: Admin) -> None:
    stopped = admin.post("/api/jobs/nope/stop")
    assert stopped.status_code == 409 and stopped.json is not None  # no engine here
