"""The web console's sign-in, sessions, CSRF and data over HTTP, against a real controller.

The browser tests (tests/test_console_browser.py) show the page; these pin the rules a
browser cannot show as precisely: what a signed-out client gets on every route, the
cookie's attributes, the CSRF check, and that actions go through the API's chain with the
key's role.
"""

from __future__ import annotations

import http.client
import json
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from controller.console.sessions import Sessions, csrf_matches, secret_matches
from controller.console.web import Console, ConsoleDeps, usage_series
from controller.events import EventLog
from controller.feed import ChangeFeed
from controller.security.keys import AccessKey
from dockyard import auth
from dockyard.errors import ApiError
from tests.console_support import ConsoleClient
from tests.support import LocalCluster

# ---------------------------------------------------------------- sessions (pure)


def _key(role: str = "admin") -> AccessKey:
    return AccessKey("DYAKAAAAAAAAAAAAAAAA", "s3cret-of-the-key", role)


def test_only_the_keys_own_secret_signs_in() -> None:
    key = _key()
    sessions = Sessions({key.access_key_id: key}.get)
    assert sessions.sign_in(key.access_key_id, "wrong") is None
    assert sessions.sign_in("DYAKBBBBBBBBBBBBBBBB", key.secret_access_key) is None
    assert not secret_matches(None, key.secret_access_key)
    made = sessions.sign_in(key.access_key_id, key.secret_access_key)
    assert made is not None
    token, session = made
    assert sessions.find(token) == (session, key)
    assert sessions.find(token + "x") is None and sessions.find("") is None


def test_sessions_expire_and_end_with_their_key() -> None:
    key = _key()
    keys = {key.access_key_id: key}
    clock = [1000.0]
    sessions = Sessions(keys.get, ttl=60, clock=lambda: clock[0])
    made = sessions.sign_in(key.access_key_id, key.secret_access_key)
    assert made is not None
    token, _ = made
    clock[0] += 59
    assert sessions.find(token) is not None
    clock[0] += 2
    assert sessions.find(token) is None and len(sessions) == 0

    made = sessions.sign_in(key.access_key_id, key.secret_access_key)
    assert made is not None
    del keys[key.access_key_id]  # DeleteAccessKey
    assert sessions.find(made[0]) is None


def test_the_csrf_token_is_the_sessions_own() -> None:
    key = _key()
    sessions = Sessions({key.access_key_id: key}.get)
    first = sessions.sign_in(key.access_key_id, key.secret_access_key)
    second = sessions.sign_in(key.access_key_id, key.secret_access_key)
    assert first is not None and second is not None
    assert csrf_matches(first[1], first[1].csrf)
    assert not csrf_matches(first[1], second[1].csrf)
    assert not csrf_matches(first[1], "")


def test_the_usage_chart_shows_the_last_hour_with_gaps_for_no_value() -> None:
    now = 10_000.0
    history = [(now - 4000, 10.0, 20.0), (now - 60, None, 30.0), (now - 40, 55.5, None)]
    assert usage_series(history, now) == {
        "cpu": [(now - 40, 55.5)],
        "memory": [(now - 60, 30.0)],
    }
    assert usage_series([], now) == {"cpu": [], "memory": []}


async def test_a_read_refused_mid_stream_is_a_problem_event_not_the_end() -> None:
    """A cluster deleted between the snapshot's reads: the live stream says so and goes on."""

    async def refuse(operation: str, body: dict[str, Any]) -> dict[str, Any]:
        raise ApiError("ClusterNotFoundException", "Cluster not found.", 400)

    keys = SimpleNamespace(get=lambda key_id: None)
    deps = ConsoleDeps(refuse, keys, None, None, EventLog(), ChangeFeed(), secure_cookie=False)
    event = await Console(deps)._snapshot_event(refuse, "gone")
    assert event.startswith(b"event: problem\n")
    assert json.loads(event.split(b"data: ")[1]) == {
        "error": "ClusterNotFoundException",
        "message": "Cluster not found.",
    }


# ---------------------------------------------------------------- over HTTP


@pytest.fixture
def controller(tmp_path: Path) -> Iterator[LocalCluster]:
    """A real controller process (no agent: these tests need no Docker)."""
    lc = LocalCluster(tmp_path)
    try:
        lc.start_controller()
        lc.client().call("CreateCluster", {"clusterName": "default"})
        yield lc
    finally:
        lc.stop()


def _admin(lc: LocalCluster) -> auth.Credentials:
    creds = lc.credentials()
    assert creds is not None
    return creds


def _signed_in(lc: LocalCluster, creds: auth.Credentials | None = None) -> ConsoleClient:
    creds = creds or _admin(lc)
    web = ConsoleClient(lc.http)
    answer = web.sign_in(creds.access_key_id, creds.secret_access_key)
    assert answer.status == 303 and answer.headers["Location"] == "/ui/"
    return web


PROTECTED_GETS = (
    "/ui/static/console.js",
    "/ui/api/snapshot",
    "/ui/api/live",
    "/ui/api/logs?task=x",
    "/ui/api/usage?service=x",
)


def test_a_signed_out_client_gets_nothing_but_the_sign_in_page(controller: LocalCluster) -> None:
    web = ConsoleClient(controller.http)
    assert web.get("/ui").headers["Location"] == "/ui/"
    page = web.get("/ui/")
    assert page.status == 303 and page.headers["Location"] == "/ui/signin"
    assert b"dockyard-csrf" not in page.body
    for path in PROTECTED_GETS:
        answer = web.get(path)
        assert answer.status == 401, path
        assert answer.json()["error"] == "SignedOut", path
    for action in ("scale", "stop-task", "instance-state", "anything"):
        assert web.act(action, {}, csrf="x").status == 401
    assert web.request("POST", "/ui/signout").status == 401
    signin = web.get("/ui/signin")
    assert signin.status == 200 and b'name="secretAccessKey"' in signin.body
    assert web.get("/ui/static/console.css").status == 200
    assert "frame-ancestors 'none'" in signin.headers["Content-Security-Policy"]
    # a forged cookie is no session
    web.jar.set_cookie(_cookie("dockyard_console", "forged"))
    assert web.get("/ui/api/snapshot").status == 401


def _cookie(name: str, value: str) -> object:
    import http.cookiejar

    return http.cookiejar.Cookie(
        0, name, value, None, False, "127.0.0.1", False, False, "/ui", True,
        False, None, False, None, None, {},
    )  # fmt: skip


def test_sign_in_gives_a_strict_httponly_expiring_cookie(controller: LocalCluster) -> None:
    creds = _admin(controller)
    web = ConsoleClient(controller.http)
    wrong = web.sign_in(creds.access_key_id, creds.secret_access_key + "x")
    unknown = web.sign_in("DYAKZZZZZZZZZZZZZZZZ", creds.secret_access_key)
    assert wrong.status == unknown.status == 401
    assert b"Unknown access key or wrong secret." in wrong.body
    assert b"Unknown access key or wrong secret." in unknown.body
    assert "Set-Cookie" not in wrong.headers

    answer = web.sign_in(creds.access_key_id, creds.secret_access_key)
    cookie = answer.headers["Set-Cookie"]
    attrs = {a.strip().split("=")[0].lower() for a in cookie.split(";")}
    assert {"httponly", "max-age", "path"} <= attrs
    assert "SameSite=Strict" in cookie and "Path=/ui" in cookie
    assert "secure" not in attrs  # plain HTTP here; Secure under TLS (--tls)
    snap = web.get("/ui/api/snapshot")
    assert snap.status == 200 and snap.json()["cluster"] == "default"


def test_sign_in_from_another_site_is_refused(controller: LocalCluster) -> None:
    creds = _admin(controller)
    web = ConsoleClient(controller.http)
    answer = web.sign_in(creds.access_key_id, creds.secret_access_key, origin="http://evil.test")
    assert answer.status == 403 and "Set-Cookie" not in answer.headers
    ok = web.sign_in(creds.access_key_id, creds.secret_access_key, origin=controller.http)
    assert ok.status == 303


def test_actions_need_the_sessions_csrf_token(controller: LocalCluster) -> None:
    web = _signed_in(controller)
    other = _signed_in(controller)
    body = {"cluster": "default", "service": "web", "desiredCount": 2}
    for token in (None, "", other.csrf()):
        answer = web.act("scale", body, csrf=token)
        assert answer.status == 403 and answer.json()["error"] == "CsrfRefused"
    # with its token the request reaches the operation chain: ECS's answer for no service
    answer = web.act("scale", body, csrf=web.csrf())
    assert answer.status == 400 and answer.json()["error"] == "ServiceNotFoundException"
    bad = web.act("scale", {**body, "desiredCount": "2"}, csrf=web.csrf())
    assert bad.status == 400 and "desiredCount" in bad.json()["message"]
    assert web.act("no-such-action", body, csrf=web.csrf()).status == 404
    assert web.request("POST", "/ui/signout", headers={"X-CSRF-Token": web.csrf()}).status == 200
    assert web.get("/ui/api/snapshot").status == 401


def test_a_readonly_key_sees_but_may_not_act(controller: LocalCluster) -> None:
    made = controller.client().call("CreateAccessKey", {"role": "readonly"})["accessKey"]
    creds = auth.Credentials(made["accessKeyId"], made["secretAccessKey"])
    web = _signed_in(controller, creds)
    assert b'content="false"' in web.get("/ui/").body  # the page shows no action buttons
    assert web.get("/ui/api/snapshot").status == 200
    answer = web.act("scale", {"cluster": "default", "service": "s", "desiredCount": 1}, web.csrf())
    assert answer.status == 403 and answer.json()["error"] == "AccessDeniedException"

    controller.client().call("DeleteAccessKey", {"accessKeyId": creds.access_key_id})
    assert web.get("/ui/api/snapshot").status == 401  # its sessions end with the key


def test_usage_is_an_empty_series_until_the_service_has_samples(controller: LocalCluster) -> None:
    web = _signed_in(controller)
    usage = web.get("/ui/api/usage?cluster=default&service=web").json()
    assert usage == {
        "service": "web",
        "available": True,  # the controller keeps usage; nothing reported for web yet
        "unit": "percent",
        "cpu": [],
        "memory": [],
    }


def test_logs_of_an_unknown_task_is_a_clear_error(controller: LocalCluster) -> None:
    web = _signed_in(controller)
    answer = web.get("/ui/api/logs?cluster=default&task=nope")
    assert answer.status == 400 and "nope" in answer.json()["message"]
    assert web.get("/ui/api/logs?cluster=default&task=x&tail=0").status == 400


def _read_event(stream: Any) -> tuple[str, dict[str, Any]]:
    """The next server-sent event (name, JSON data), skipping keep-alive comments."""
    name, data = "", ""
    while True:
        line = stream.readline().decode()
        if line == "":
            raise EOFError("the stream ended")
        if line.startswith("event: "):
            name = line[7:].strip()
        elif line.startswith("data: "):
            data = line[6:]
        elif line == "\n" and name:
            return name, json.loads(data)


def test_the_live_stream_follows_changes_and_ends_with_the_controller(
    controller: LocalCluster,
) -> None:
    web = _signed_in(controller)
    cookie = next(c for c in web.jar if c.name == "dockyard_console")
    conn = http.client.HTTPConnection("127.0.0.1", controller.http_port, timeout=20)
    try:
        conn.request("GET", "/ui/api/live", headers={"Cookie": f"{cookie.name}={cookie.value}"})
        stream = conn.getresponse()
        assert stream.status == 200 and stream.headers["Content-Type"] == "text/event-stream"
        name, snap = _read_event(stream)
        assert name == "snapshot" and [c["name"] for c in snap["clusters"]] == ["default"]

        controller.client().call("CreateCluster", {"clusterName": "second"})
        name, snap = _read_event(stream)
        assert name == "snapshot"
        assert sorted(c["name"] for c in snap["clusters"]) == ["default", "second"]

        started = time.monotonic()
        assert controller.controller is not None
        controller.controller.kill(signal.SIGTERM, timeout=15)  # an open stream holds nothing
        assert time.monotonic() - started < 10
        with pytest.raises((EOFError, ConnectionError, http.client.IncompleteRead)):
            while True:
                _read_event(stream)
    finally:
        conn.close()
