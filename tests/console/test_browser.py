"""The console in a real browser: Debian's Chromium, driven by Playwright, against a real
``samops run`` following a real git repository.

Each test checks what a person would see, and that the page logged no error. Screenshots go to
the test's folder, or to ``$SAMOPS_SCREENSHOTS`` (``docs/images`` refreshes the docs' pictures:
``SAMOPS_SCREENSHOTS=docs/images make test PYTEST_ARGS=tests/console/test_browser.py``).

The browser is ``$SAMOPS_CHROMIUM`` or ``chromium`` on the PATH (``.ci/run`` installs Debian's
``chromium``); Playwright never downloads one. Without a browser these tests skip, except under
``CI=true``, where they fail.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import MANIFESTS, GitRepo
from tests.console.conftest import Console
from tests.daemon.conftest import DaemonProcess, demo_data_dir, set_role
from tests.ports import free_port

playwright_api = pytest.importorskip("playwright.sync_api")

DEMO_KEY = "samops_goPmxX-UlaHgz4nztSbCSEbbvfHS3hGDZoifePCr3-o"
TIMEOUT_MS = 15_000
MARKUP = "<img src=x onerror=window.__pwned=1><script>window.__pwned=2</script>"


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    """SQLite only: what the page shows does not depend on the database (the API tests run
    on both)."""
    return f"sqlite:///{tmp_path / 'samops.sqlite3'}"


def chromium() -> str | None:
    found = os.environ.get("SAMOPS_CHROMIUM") or shutil.which("chromium")
    return found if found and Path(found).exists() else None


@pytest.fixture
def browser() -> Iterator[Any]:
    """A browser for one test. Not shared between tests: Playwright's synchronous API runs an
    event loop in this thread for as long as it is open, and the next test's ``asyncio.run``
    would find it running."""
    executable = chromium()
    if executable is None:
        if os.environ.get("CI"):
            pytest.fail("CI=true: the browser tests need Chromium (apt-get install chromium)")
        pytest.skip("no Chromium found (install Debian's chromium, or set SAMOPS_CHROMIUM)")
    with playwright_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        yield launched
        launched.close()


class Page:
    """A browser tab on the console, with every console error and page error it logged."""

    def __init__(self, browser: Any, console: Console, shots: Path) -> None:
        self.context = browser.new_context(viewport={"width": 1280, "height": 860})
        self.tab = self.context.new_page()
        self.tab.set_default_timeout(TIMEOUT_MS)
        self.errors: list[str] = []
        self.expected_errors = 0
        self.tab.on("console", self._console_message)
        self.tab.on("pageerror", lambda e: self.errors.append(str(e)))
        self.console = console
        self.shots = shots

    def _console_message(self, message: Any) -> None:
        if message.type == "error":
            self.errors.append(message.text)

    def sign_in(self, key: str) -> None:
        self.tab.goto(self.console.base + "/")
        self.tab.fill("#key", key)
        self.tab.press("#key", "Enter")
        self.tab.wait_for_selector("#applied-revision")

    def open(self, view: str) -> None:
        self.tab.evaluate("view => { location.hash = view; }", view)

    def shot(self, name: str) -> None:
        self.tab.screenshot(path=str(self.shots / f"console-{name}.png"), full_page=True)


@pytest.fixture
def page(browser: Any, console: Console, tmp_path: Path) -> Iterator[Page]:
    shots = Path(os.environ.get("SAMOPS_SCREENSHOTS") or tmp_path)
    shots.mkdir(parents=True, exist_ok=True)
    opened = Page(browser, console, shots)
    yield opened
    opened.context.close()
    assert len(opened.errors) == opened.expected_errors, opened.errors


def test_the_overview_shows_a_new_commit_without_a_reload(page: Page, console: Console) -> None:
    page.sign_in(console.keys.admin)
    first = console.repo.git("rev-parse", "HEAD")
    assert page.tab.get_attribute("#applied-revision", "title") == first
    page.tab.wait_for_selector("#processes td:has-text('run')")
    revision = set_role(console.repo, "A role committed while the page is open.")
    page.tab.wait_for_function(
        "rev => document.querySelector('#applied-revision').title === rev", arg=revision
    )
    assert page.tab.inner_text("#applied-revision") == revision[:12]
    page.shot("overview")


def test_a_failed_commit_shows_its_errors_with_positions(page: Page, console: Console) -> None:
    page.sign_in(console.keys.admin)
    client = console.repo.root / "manifests/clients/support.yaml"
    client.write_text(
        client.read_text().replace("defaultTemperature: 0.3", "defaultTemperature: hot")
    )
    console.repo.commit("a temperature that is not a number")
    errors = page.tab.wait_for_selector("#last-errors")
    where = page.tab.inner_text("#last-errors .where")
    assert where.startswith("manifests/clients/support.yaml:")
    line, column = (int(part) for part in where.split(":")[1:])
    assert line > 1
    assert column > 1
    assert "defaultTemperature" in errors.inner_text()
    page.open("#history")
    page.tab.click("#history tr:nth-child(2) a")
    page.tab.wait_for_selector("#sync .errors")
    assert "invalid" in page.tab.inner_text("#sync h2")
    page.shot("sync-errors")


def test_an_applied_sync_shows_its_plan_as_a_field_diff(page: Page, console: Console) -> None:
    page.sign_in(console.keys.admin)
    revision = set_role(console.repo, "Answer in haiku.")
    console.daemon.applied(revision)
    page.open("#history")
    page.tab.click("#history tr:nth-child(2) a")
    page.tab.wait_for_selector("#sync table.fields")
    assert page.tab.inner_text("#sync td.after") == "Answer in haiku."
    assert "Willy Wonka" in page.tab.inner_text("#sync td.before")
    page.shot("sync-plan")


def test_the_playground_streams_an_answer_and_shows_tool_calls(
    page: Page, console: Console
) -> None:
    page.sign_in(console.keys.viewer)
    page.open("#resources")
    page.tab.click("#clients a:text('support')")
    page.tab.wait_for_selector("#graph")
    # count how often the answer's text changes while it arrives
    page.tab.evaluate(
        """() => { window.__updates = 0; new MutationObserver(() => window.__updates++)
           .observe(document.querySelector('#chat-log'), {subtree: true, characterData: true,
           childList: true}); }"""
    )
    page.tab.fill(".chat-input", "tell me something about chocolate factories #pace=40")
    page.tab.click(".chat-form button")
    page.tab.wait_for_selector("#chat-log .msg.assistant .meta")
    answer = page.tab.inner_text("#chat-log .msg.assistant")
    assert answer.startswith("echo: tell me something about chocolate factories #pace=40")
    assert page.tab.evaluate("window.__updates") > 5  # piece by piece, not at once

    page.tab.fill(".chat-input", 'call:calculator{"expression": "6*7"}')
    page.tab.click(".chat-form button")
    page.tab.wait_for_selector("#chat-log .msg.assistant:nth-of-type(2) .meta, .tool")
    page.tab.wait_for_selector("#chat-log .tool:has-text('calculator')")
    page.tab.wait_for_function(
        "() => document.querySelectorAll('#chat-log .msg.assistant .meta').length === 2"
    )
    assert "42" in page.tab.inner_text("#chat-log")
    page.shot("playground")


def test_the_playground_asks_for_the_key_a_client_needs(page: Page, console: Console) -> None:
    page.sign_in(console.keys.admin)
    page.open("#resources/stackademy_advisor")
    page.tab.wait_for_selector("#graph")
    assert "stackademy_advisor_key" in (page.tab.text_content("#graph") or "")
    page.tab.fill(".chat-input", "hello")
    page.tab.click(".chat-form button")
    page.tab.wait_for_selector(".chat-key:visible")
    assert "missing_key" in page.tab.inner_text("#chat-log")
    page.tab.fill(".chat-key", DEMO_KEY)
    page.tab.fill(".chat-input", "hello again")
    page.tab.click(".chat-form button")
    page.tab.wait_for_selector("#chat-log .msg.assistant .meta")
    assert "echo: hello again" in page.tab.inner_text("#chat-log")


def test_suspend_and_resume(page: Page, console: Console) -> None:
    page.sign_in(console.keys.admin)
    page.tab.click("#suspend")
    page.tab.wait_for_selector("#suspended:has-text('suspended')")
    assert console.daemon.status()["suspended"] is True
    page.tab.click("#resume")
    page.tab.wait_for_selector("#suspended:has-text('active')")
    assert console.daemon.status()["suspended"] is False
    page.tab.click("#reconcile")
    page.tab.wait_for_selector("#toast:has-text('reconcile: done')")


def test_a_viewer_cannot_act(page: Page, console: Console) -> None:
    page.sign_in(console.keys.viewer)
    assert page.tab.is_visible("#read-only")
    assert page.tab.query_selector("#suspend") is None
    status = page.tab.evaluate(
        """async () => (await fetch('/console/api/actions/suspend', {method: 'POST',
           headers: {'X-CSRF-Token': (await (await fetch('/console/api/session')).json()).csrf},
           body: '{}'})).status"""
    )
    page.expected_errors = 1  # the browser logs the refused request
    assert status == 403
    assert console.daemon.status()["suspended"] is False


def test_markup_in_manifests_is_inert(page: Page, console: Console) -> None:
    set_role(console.repo, f"'{MARKUP}'")
    client = console.repo.root / "manifests/clients/support.yaml"
    text = client.read_text().replace(
        "description: Customer support", f"description: {MARKUP} Customer support"
    )
    client.write_text(text)
    console.daemon.applied(console.repo.commit("markup in the description"))
    page.sign_in(console.keys.admin)
    for view, shown in (
        ("#history", "#history"),
        ("#resources", "#clients"),
        ("#resources/support", "#graph"),
    ):
        page.open(view)
        page.tab.wait_for_selector(shown)
    page.tab.click("text=Applied fields")
    assert MARKUP in page.tab.inner_text("pre.fields")
    page.open("#history")
    page.tab.click("#history tr:nth-child(2) a")
    page.tab.wait_for_selector("#sync table.fields")
    assert MARKUP in page.tab.inner_text("#sync")
    assert page.tab.evaluate("window.__pwned") is None
    assert page.tab.query_selector("main img, main script") is None


def test_review_a_branch_and_chat_with_it_before_merging(page: Page, console: Console) -> None:
    console.repo.git("checkout", "-q", "-b", "haiku")
    set_role(console.repo, "Always answer in haiku.")
    console.repo.git("checkout", "-q", "main")
    page.sign_in(console.keys.admin)
    page.open("#review")
    page.tab.fill("#review-head", "haiku")
    page.tab.click("#review-result >> xpath=.. >> button:text('Review')")
    page.tab.wait_for_selector("#review-result .plan")
    assert "Always answer in haiku." in page.tab.inner_text("#review-result")
    page.tab.fill("#review-client", "support")
    page.tab.click("button:text('Open')")
    page.tab.fill("#review-result .chat-input", "#system")
    page.tab.click("#review-result .chat-form button")
    page.tab.wait_for_selector("#review-chat-log .msg.assistant .meta")
    assert "Always answer in haiku." in page.tab.inner_text("#review-chat-log")
    page.shot("review")


def test_make_run_signs_in_from_its_link_and_every_example_client_answers(
    browser: Any, tmp_path: Path
) -> None:
    """What ``make run`` starts (``--demo``, no admin key): the printed link signs in, and each
    example client answers in the playground, the key-guarded one once its key is given."""
    port = free_port()
    repo = GitRepo(tmp_path / "repo")
    shutil.copytree(MANIFESTS, repo.root / "manifests")
    for path in (repo.root / "manifests").rglob("*.yaml"):  # the demo's own port, here
        path.write_text(path.read_text().replace("127.0.0.1:8080", f"127.0.0.1:{port}"))
    repo.commit("the example")
    data = demo_data_dir(tmp_path)
    daemon = DaemonProcess(
        ["--demo", "--repo", str(repo.root), "--path", "manifests"],
        env={
            "SAMOPS_DATA_DIR": str(data),
            "SAMOPS_DATABASE_URL": f"sqlite:///{tmp_path / 's.sqlite3'}",
            "STACKADEMY_API_TOKEN": "demo-token",
            "SAMOPS_SECRETS_ENV": "STACKADEMY_API_TOKEN",
            "OPENAI_API_KEY": "",
        },
        log=tmp_path / "run.log",
        port=port,
    )
    context = browser.new_context(viewport={"width": 1280, "height": 860})
    errors: list[str] = []
    try:
        daemon.ready()
        link = re.search(r"console: (http://\S+#key=\S+)", daemon.log.read_text())
        assert link, daemon.log.read_text()
        tab = context.new_page()
        tab.set_default_timeout(TIMEOUT_MS)
        tab.on("pageerror", lambda e: errors.append(str(e)))
        tab.goto(link.group(1))
        tab.wait_for_selector("#applied-revision")
        assert "#key=" not in tab.url  # used once, then gone from the address bar
        tab.evaluate("() => { location.hash = '#resources'; }")
        tab.wait_for_selector("#clients a")
        names = tab.eval_on_selector_all("#clients a", "links => links.map(a => a.textContent)")
        assert sorted(names) == ["lab_assistant", "stackademy_advisor", "support"]
        for name in names:
            tab.evaluate("view => { location.hash = view; }", f"#resources/{name}")
            tab.wait_for_selector(f"h2:text('LLM client {name}')")
            tab.fill(".chat-input", f"hello {name}")
            tab.click(".chat-form button")
            tab.wait_for_selector("#chat-log .msg.assistant:not(.streaming)")
            if tab.is_visible(".chat-key"):  # the client needs its key: the page asked
                tab.fill(".chat-key", DEMO_KEY)
                tab.fill(".chat-input", f"hello {name}")
                tab.click(".chat-form button")
                tab.wait_for_selector("#chat-log .msg.assistant .meta")
            assert f"echo: hello {name}" in tab.inner_text("#chat-log"), name
        tab.evaluate("view => { location.hash = view; }", "#resources/stackademy_advisor")
        tab.wait_for_selector("#graph")
        shots = Path(os.environ.get("SAMOPS_SCREENSHOTS") or tmp_path)
        tab.screenshot(path=str(shots / "console-client.png"), full_page=True)
    finally:
        context.close()
        assert daemon.stop() == 0
    assert errors == []
