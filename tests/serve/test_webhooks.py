"""Webhook verification, per sender, against signatures computed like the providers do."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from serve.webhooks import sign, verify

SECRET = "s3cret"
BODY = b'{"ref": "refs/heads/main"}'
GOOD = hmac.new(SECRET.encode(), BODY, hashlib.sha256).hexdigest()


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
