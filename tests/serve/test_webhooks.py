"""Webhook verification, per sender, against signatures computed like the providers do; and
request bodies (webhook, chat) read whole however they arrive: large, in parts, chunked."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from serve.webhooks import verify
from tests.conftest import GitRepo
from tests.daemon.conftest import DaemonProcess, wait_for
from tests.fakes.webhooks import sign

SECRET = "s3cret"
BODY = b'{"ref": "refs/heads/main"}'
GOOD = hmac.new(SECRET.encode(), BODY, hashlib.sha256).hexdigest()
LIMIT = 1024 * 1024  # webhook and chat bodies alike


@pytest.mark.parametrize(
    ("headers", "provider", "ok"),
    [
        pytest.param({"X-Hub-Signature-256": f"sha256={GOOD}"}, "github", True, id="github"),
        pytest.param(
            {"X-Hub-Signature-256": f"sha256={GOOD.upper()}"},
            "github",
            True,
            id="github-uppercase-hex",
        ),
        pytest.param(
            {"X-Hub-Signature-256": f"sha1={GOOD}"}, "github", False, id="github-wrong-scheme"
        ),
        pytest.param(
            {"X-Hub-Signature-256": "sha256=" + "0" * 64}, "github", False, id="github-wrong-digest"
        ),
        pytest.param({"X-Gitlab-Token": SECRET}, "gitlab", True, id="gitlab"),
        pytest.param({"X-Gitlab-Token": SECRET + "x"}, "gitlab", False, id="gitlab-wrong"),
        pytest.param({"X-Gitea-Signature": GOOD}, "gitea", True, id="gitea"),
        pytest.param({"X-Gitea-Signature": GOOD[:-1]}, "gitea", False, id="gitea-truncated"),
        pytest.param({"X-Samops-Signature": sign(BODY, SECRET)}, "generic", True, id="generic"),
        pytest.param({}, "unknown", False, id="unsigned"),
    ],
)
def test_delivery_is_verified_per_sender(headers: dict[str, str], provider: str, ok: bool) -> None:
    verdict = verify(headers, BODY, SECRET)
    assert (verdict.provider, verdict.ok) == (provider, ok)


def test_signature_covers_the_whole_body() -> None:
    assert not verify({"X-Hub-Signature-256": f"sha256={GOOD}"}, BODY + b"\n", SECRET).ok


# --- bodies through a real server ---------------------------------------------------------------


def github_push(size: int) -> bytes:
    """A GitHub-shaped push payload of about ``size`` bytes (many commits)."""
    commits = [
        {"id": f"{n:040x}", "message": f"change {n}: " + "x" * 200, "added": [], "removed": []}
        for n in range(size // 300)
    ]
    return json.dumps({"ref": "refs/heads/main", "after": "1" * 40, "commits": commits}).encode()


def github_headers(body: bytes) -> dict[str, str]:
    digest = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    return {"X-GitHub-Event": "push", "X-Hub-Signature-256": f"sha256={digest}"}


def chat(content: str) -> bytes:
    message = {"role": "user", "content": content}
    return json.dumps({"model": "support", "messages": [message]}).encode()


def post_raw(
    port: int,
    path: str,
    parts: list[bytes],
    headers: dict[str, str],
    *,
    chunked: bool = False,
    pause: float = 0.3,
) -> tuple[int, bytes]:
    """POST ``parts`` over a raw socket, one write each with ``pause`` seconds between them
    (so the server sees the body arrive in pieces); returns (status, response body)."""

    async def exchange() -> tuple[int, bytes]:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        framing = (
            {"Transfer-Encoding": "chunked"}
            if chunked
            else {"Content-Length": str(sum(map(len, parts)))}
        )
        head = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1", "Connection: close"]
        head += [f"{k}: {v}" for k, v in {**headers, **framing}.items()]
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode())
        try:
            for n, part in enumerate(parts):
                if n:
                    await asyncio.sleep(pause)  # the shape of the input, not an assertion
                writer.write(b"%x\r\n%s\r\n" % (len(part), part) if chunked else part)
                await writer.drain()
            if chunked:
                writer.write(b"0\r\n\r\n")
                await writer.drain()
        except ConnectionError:
            pass  # refused early (413): the answer is still there to read
        answer = await asyncio.wait_for(reader.read(), timeout=15)
        writer.close()
        head_text, _, body = answer.partition(b"\r\n\r\n")
        return int(head_text.split()[1]), body

    return asyncio.run(exchange())


@pytest.fixture
def server(repo: GitRepo, tmp_path: Path) -> Iterator[DaemonProcess]:
    """``samops run`` on SQLite with the webhook on and the offline scripted upstream."""
    process = DaemonProcess(
        ["--repo", str(repo.root), "--path", "manifests", "--webhook-secret", SECRET],
        env={
            "SAMOPS_DATA_DIR": str(tmp_path / "data"),
            "SAMOPS_DATABASE_URL": f"sqlite:///{tmp_path / 'samops.sqlite3'}",
            "OPENAI_API_KEY": "",
        },
        log=tmp_path / "samops.log",
    )
    process.applied(repo.git("rev-parse", "HEAD"))
    wait_for(lambda: process.metric("samops_served_generation") == 1, what="generation served")
    yield process
    process.stop()


def halves(body: bytes) -> list[bytes]:
    return [body[: len(body) // 2], body[len(body) // 2 :]]


@pytest.mark.parametrize(
    "parts",
    [
        pytest.param([github_push(700_000)], id="700-kB-in-one-write"),
        pytest.param(halves(github_push(5_000)), id="5-kB-in-two-writes"),
        pytest.param(halves(github_push(300_000)), id="300-kB-in-two-writes"),
    ],
)
def test_signed_webhook_is_accepted_however_its_body_arrives(
    server: DaemonProcess, parts: list[bytes]
) -> None:
    body = b"".join(parts)
    code, answer = post_raw(server.port, "/hooks/git", parts, github_headers(body))
    assert (code, json.loads(answer)) == (202, {"status": "accepted", "worker": 0})


def test_chat_body_sent_in_parts_is_read_whole(server: DaemonProcess) -> None:
    body = chat("hello in two parts")
    headers = {"Content-Type": "application/json"}
    for chunked in (False, True):
        code, answer = post_raw(
            server.port, "/v1/chat/completions", halves(body), headers, chunked=chunked
        )
        assert code == 200, answer
        assert json.loads(answer)["choices"][0]["message"]["content"] == "echo: hello in two parts"


@pytest.mark.parametrize(
    ("path", "body", "headers", "code"),
    [
        pytest.param(
            "/hooks/git", b"x" * (LIMIT + 1), github_headers(b""), "payload_too_large", id="webhook"
        ),
        pytest.param(
            "/v1/chat/completions",
            chat("x" * LIMIT),
            {"Content-Type": "application/json"},
            "body_too_large",
            id="chat",
        ),
    ],
)
def test_body_over_the_limit_is_refused_declared_or_not(
    server: DaemonProcess, path: str, body: bytes, headers: dict[str, str], code: str
) -> None:
    for chunked in (False, True):  # a Content-Length too large, or a chunked body that grows
        status, answer = post_raw(server.port, path, halves(body), headers, chunked=chunked)
        assert status == 413, answer
        assert json.loads(answer)["error"]["code"] == code


def test_a_delivery_sent_again_is_acknowledged_once(server: DaemonProcess) -> None:
    # Issue 12, item 19: a captured, correctly signed delivery could be replayed at will.
    body = github_push(2_000)
    headers = {**github_headers(body), "X-GitHub-Delivery": "72d3162e-cc78-11e3-81ab-4c9367dc0958"}
    first = post_raw(server.port, "/hooks/git", [body], headers)
    again = post_raw(server.port, "/hooks/git", [body], headers)
    other = post_raw(server.port, "/hooks/git", [body], {**headers, "X-GitHub-Delivery": "b"})
    assert (first[0], json.loads(first[1])["status"]) == (202, "accepted")
    assert (again[0], json.loads(again[1])["status"]) == (200, "duplicate")
    assert (other[0], json.loads(other[1])["status"]) == (202, "accepted")
    assert server.metric('samops_webhook_requests_total{provider="github",result="duplicate"}') == 1
