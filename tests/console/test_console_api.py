"""The console's routes as a browser uses them: signing in, reading, acting, and what is safe.

A real ``samops run`` follows a real git repository (``conftest.py``); the client keeps cookies
like a browser and sends the CSRF token it was given.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

from reconciler.apikeys import digest_of
from tests.conftest import GitRepo
from tests.console.conftest import STACKADEMY_TOKEN, Console, ConsoleClient, Keys
from tests.daemon.conftest import DaemonProcess, set_role, wait_for

DEMO_KEY = "samops_goPmxX-UlaHgz4nztSbCSEbbvfHS3hGDZoifePCr3-o"


def test_reads_need_a_session_and_the_admin_key_signs_in(console: Console) -> None:
    client = console.client()
    assert client.call("GET", "/console/api/overview")[0] == 401
    status, session = client.call("GET", "/console/api/session")
    assert (status, session["signed_in"], session["sign_in_enabled"]) == (200, False, True)
    assert client.call("POST", "/console/api/session", {"key": "not-the-key"})[0] == 401

    session = client.sign_in(console.keys.admin)
    assert session["role"] == "admin"
    cookie = client.last_headers["Set-Cookie"]
    assert "HttpOnly" in cookie
    assert "SameSite=Strict" in cookie
    assert "Secure" not in cookie  # plain http on loopback; set when served over TLS
    status, overview = client.call("GET", "/console/api/overview")
    assert status == 200
    assert overview["last_applied_revision"] == console.repo.git("rev-parse", "HEAD")
    assert overview["followed"]["ref"] == "HEAD"
    assert overview["followed"]["path"] == "manifests"
    assert client.last_headers["Cache-Control"] == "no-store"
    process = wait_for(
        lambda: list(client.call("GET", "/console/api/overview")[1]["processes"]),
        what="the heartbeat",
    )[0]
    assert (process["role"], process["leads"]) == ("run", True)
    assert process["served_generation"] == overview["generation"]


def test_actions_need_the_csrf_token_and_an_admin(console: Console) -> None:
    admin = console.client()
    admin.sign_in(console.keys.admin)
    status, error = admin.call("POST", "/console/api/actions/suspend", {}, csrf=False)
    assert (status, error["error"]["code"]) == (403, "csrf_token_missing")
    assert console.daemon.status()["suspended"] is False

    viewer = console.client()
    assert viewer.sign_in(console.keys.viewer)["role"] == "viewer"
    assert viewer.call("GET", "/console/api/overview")[0] == 200
    status, error = viewer.call("POST", "/console/api/actions/suspend", {})
    assert (status, error["error"]["code"]) == (403, "read_only")
    assert console.daemon.status()["suspended"] is False

    assert admin.call("POST", "/console/api/actions/suspend", {"reason": "freeze"})[0] == 200
    shown = console.daemon.status()
    assert (shown["suspended"], shown["suspended_reason"]) == (True, "freeze")
    revision = set_role(console.repo, "A role committed while suspended.")
    assert admin.call("POST", "/console/api/actions/resume", {})[0] == 200
    console.daemon.applied(revision)
    assert console.daemon.status()["suspended"] is False
    assert admin.call("POST", "/console/api/actions/reconcile", {})[0] == 200
    status, error = admin.call("POST", "/console/api/actions/delete-everything", {})
    assert (status, error["error"]["code"]) == (404, "unknown_action")


def test_signing_out_ends_the_session_everywhere(console: Console) -> None:
    client = console.client()
    client.sign_in(console.keys.admin)
    token = next(c.value for c in client.jar if c.name == "samops_console")
    assert client.call("DELETE", "/console/api/session")[0] == 200
    other = console.client()  # the old cookie, replayed from elsewhere
    other.opener.addheaders = [("Cookie", f"samops_console={token}")]
    assert other.call("GET", "/console/api/overview")[0] == 401


def test_history_shows_errors_with_positions_and_plans_as_field_diffs(console: Console) -> None:
    client = console.client()
    client.sign_in(console.keys.admin)
    applied = set_role(console.repo, "A new role for the history.")
    console.daemon.applied(applied)
    broken = console.repo.root / "manifests/clients/support.yaml"
    broken.write_text(broken.read_text().replace("kind: LLMClient", "kind: LLMClient\nbogus: 1"))
    invalid = console.repo.commit("an invalid client")
    console.daemon.attempted(invalid)

    _, page = client.call("GET", "/console/api/syncs")
    outcomes = [(s["revision"], s["outcome"]) for s in page["syncs"]]
    assert outcomes[0] == (invalid, "invalid")
    assert (applied, "applied") in outcomes
    failed = page["syncs"][0]
    _, detail = client.call("GET", f"/console/api/syncs/{failed['id']}")
    error = detail["errors"][0]
    assert error["file"] == "manifests/clients/support.yaml"
    assert error["line"] > 0
    assert error["column"] > 0
    assert "bogus" in json.dumps(error)

    sync = next(s for s in page["syncs"] if s["revision"] == applied)
    _, detail = client.call("GET", f"/console/api/syncs/{sync['id']}")
    (change,) = detail["plan"]["changes"]
    assert (change["action"], change["kind"], change["name"]) == ("update", "LLMClient", "support")
    (field,) = change["fields"]
    assert field["after"] == "A new role for the history."
    assert "Willy Wonka" in field["before"]
    assert client.call("GET", "/console/api/syncs/999999")[0] == 404


def test_review_of_a_branch_shows_its_plan_and_risk_flags(console: Console) -> None:
    client = console.client()
    client.sign_in(console.keys.viewer)
    console.repo.git("checkout", "-q", "-b", "open-up")
    advisor = console.repo.root / "manifests/clients/stackademy.yaml"
    text = advisor.read_text()
    advisor.write_text(re.sub(r"\n  apiKey: .*", "", text))
    console.repo.commit("make the advisor public")
    console.repo.git("checkout", "-q", "main")

    status, review = client.call("POST", "/console/api/review", {"head": "open-up"})
    assert status == 200, review
    assert review["base"] == console.repo.git("rev-parse", "main")
    assert any(f["code"] == "client-public" for f in review["flags"]), review["flags"]
    status, error = client.call("POST", "/console/api/review", {"head": "no-such-branch"})
    assert status == 409
    assert "no-such-branch" in error["error"]["message"]


def test_playground_streams_and_asks_for_the_key_a_client_needs(console: Console) -> None:
    client = console.client()
    client.sign_in(console.keys.viewer)
    body = {"messages": [{"role": "user", "content": "hello console"}]}
    status, events = client.call("POST", "/console/api/chat/support", body)
    assert status == 200
    deltas = re.findall(r"event: delta\ndata: (.*)\n", events)
    assert "".join(json.loads(d)["content"] for d in deltas) == "echo: hello console"
    assert "event: done" in events

    _, events = client.call("POST", "/console/api/chat/stackademy_advisor", body)
    assert '"code":"missing_key"' in events.replace(" ", "")
    with_key = {**body, "key": DEMO_KEY}
    _, events = client.call("POST", "/console/api/chat/stackademy_advisor", with_key)
    assert "event: done" in events, events
    # an unmerged ref is for admins only
    status, error = client.call("POST", "/console/api/chat/support", {**body, "ref": "main"})
    assert (status, error["error"]["code"]) == (403, "admin_only")
    assert client.call("POST", "/console/api/chat/support", body, csrf=False)[0] == 403


def test_no_secret_or_whole_digest_reaches_the_console(console: Console) -> None:
    client = console.client()
    client.sign_in(console.keys.admin)
    answers = [
        client.call("GET", path)[1]
        for path in ("/console/api/overview", "/console/api/syncs", "/console/api/resources")
    ]
    _, syncs = client.call("GET", "/console/api/syncs")
    answers.append(client.call("GET", f"/console/api/syncs/{syncs['syncs'][-1]['id']}")[1])
    clients = {c["name"]: c for c in answers[2]["clients"]}
    advisor, support = clients["stackademy_advisor"], clients["support"]
    assert advisor["plugins"] == ["stackademy_catalogue", "stackademy_enrolment"]
    (key,) = advisor["keys"]
    assert (key["name"], key["active"]) == ("stackademy_advisor_key", True)
    assert re.fullmatch(r"sha256:[0-9a-f]{12}…", key["digests"][0])
    assert support["functions"] == ["calculator", "date_calculator"]
    assert (support["budgets"], support["keys"]) == (["support_daily"], [])
    text = json.dumps(answers)
    assert "stackademy_advisor_key" in text  # the key is shown by name...
    assert STACKADEMY_TOKEN not in text
    assert DEMO_KEY not in text
    assert console.keys.admin not in text
    assert not re.search(r"sha(256|512):[0-9a-f]{13}", text)  # ...and 12 hex digits at most


def test_the_page_forbids_everything_it_does_not_need(console: Console) -> None:
    client = console.client()
    status, page = client.call("GET", "/")
    assert status == 200
    assert '<script src="/console/assets/console.js"' in page
    policy = client.last_headers["Content-Security-Policy"]
    assert "default-src 'none'" in policy
    assert "script-src 'self'" in policy
    assert "frame-ancestors 'none'" in policy
    assert client.last_headers["X-Content-Type-Options"] == "nosniff"
    assert client.call("GET", "/console/assets/console.js")[0] == 200
    assert client.call("GET", "/console/assets/../../reconciler/api.py")[0] == 404
    assert client.call("GET", "/console/assets/index.htm")[0] == 404


def test_the_overview_lists_every_process_and_the_generation_it_serves(
    start_daemon: Callable[..., DaemonProcess],
    repo: GitRepo,
    keys: Keys,
) -> None:
    daemon = start_daemon(
        "--repo",
        str(repo.root),
        "--path",
        "manifests",
        "--workers",
        "2",
        "--admin-key-digest",
        digest_of(keys.admin),
    )
    daemon.ready(timeout=60)  # two processes start: slow on a loaded machine
    client = ConsoleClient(daemon.base)
    client.sign_in(keys.admin)

    def both_serving() -> list[dict[str, Any]] | None:
        overview = client.call("GET", "/console/api/overview")[1]
        processes = overview["processes"]
        serving = {p["served_generation"] for p in processes}
        return processes if len(processes) == 2 and serving == {overview["generation"]} else None

    processes = wait_for(
        both_serving, timeout=60, what="two processes serving the applied generation"
    )
    assert sorted((p["role"], p["leads"]) for p in processes) == [("run", True), ("worker", False)]
    revision = set_role(repo, "A role for both processes.")
    daemon.applied(revision)
    generation = daemon.status()["generation"]
    wait_for(
        lambda: {p["served_generation"] for p in both_serving() or []} == {generation},
        what="both processes on the new generation",
    )
