"""What a committed Secret may read on the serving host (issue 12, item 2): only what the
operator allowed, judged after following links, never samops' own settings or sealing key."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from reconciler.sam.kinds import SecretConfig
from reconciler.sam.secret_access import SecretAccess
from serve.secrets import SecretUnavailable, resolve_secret


def env(name: str) -> SecretConfig:
    return SecretConfig.model_validate({"valueFrom": {"env": name}})


def file(path: Path) -> SecretConfig:
    return SecretConfig.model_validate({"valueFrom": {"file": str(path)}})


@pytest.fixture
def secrets_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "run-secrets"
    folder.mkdir()
    (folder / "token").write_text("allowed-value\n")
    (tmp_path / "elsewhere.txt").write_text("not-allowed\n")
    (folder / "escape").symlink_to(tmp_path / "elsewhere.txt")
    (folder / "sealing.key").write_text("samops-sk1:private\n")
    return folder


def test_nothing_is_readable_by_default(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-host")
    monkeypatch.delenv("SAMOPS_SECRETS_ENV", raising=False)
    monkeypatch.delenv("SAMOPS_SECRETS_FILE_DIRS", raising=False)
    (tmp_path / "f").write_text("x")
    with pytest.raises(SecretUnavailable, match="OPENAI_API_KEY is not one this host lets"):
        resolve_secret("s", env("OPENAI_API_KEY"))
    with pytest.raises(SecretUnavailable, match="is not in a folder this host lets manifests"):
        resolve_secret("s", file(tmp_path / "f"))


def test_allowed_names_prefixes_and_folders_are_read(
    monkeypatch: pytest.MonkeyPatch, secrets_folder: Path
) -> None:
    monkeypatch.setenv("TEAM_TOKEN", "team")
    monkeypatch.setenv("EXACT", "exact")
    access = SecretAccess(env=("TEAM_*", "EXACT"), file_dirs=(secrets_folder.resolve(),))
    assert resolve_secret("a", env("TEAM_TOKEN"), access) == "team"
    assert resolve_secret("b", env("EXACT"), access) == "exact"
    assert resolve_secret("c", file(secrets_folder / "token"), access) == "allowed-value"
    with pytest.raises(SecretUnavailable, match="EXACTLY is not one"):
        resolve_secret("d", env("EXACTLY"), access)


@pytest.mark.parametrize(
    ("source", "message"),
    [
        pytest.param("escape", "a link to", id="symlink-out-of-the-folder"),
        pytest.param("../elsewhere.txt", "is not in a folder", id="dot-dot"),
        pytest.param("sealing.key", "sealing key, which manifests may never read", id="sealing"),
    ],
)
def test_files_are_judged_after_following_links(
    monkeypatch: pytest.MonkeyPatch, secrets_folder: Path, source: str, message: str
) -> None:
    monkeypatch.setenv("SAMOPS_SECRETS_PRIVATE_KEY_FILE", str(secrets_folder / "sealing.key"))
    monkeypatch.setenv("SAMOPS_SECRETS_FILE_DIRS", str(secrets_folder))
    with pytest.raises(SecretUnavailable, match=message) as refused:
        resolve_secret("s", file(secrets_folder / source))
    assert "not-allowed" not in str(refused.value) and "private" not in str(refused.value)


def test_samops_settings_are_never_readable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SAMOPS_WEBHOOK_SECRET", "hook")
    access = SecretAccess(env=("*",))
    with pytest.raises(SecretUnavailable, match="is a samops setting"):
        resolve_secret("s", env("SAMOPS_WEBHOOK_SECRET"), access)


def test_validate_refuses_a_reference_outside_the_configured_policy(tmp_path: Path) -> None:
    (tmp_path / "secret.yaml").write_text(
        "apiVersion: smarter.sh/v1\nkind: Secret\nmetadata:\n  name: s\n  description: d\n"
        "  version: 0.1.0\nspec:\n  config:\n    valueFrom:\n      env: OPENAI_API_KEY\n"
    )
    samops = Path(sys.executable).parent / "samops"
    base = {k: v for k, v in os.environ.items() if not k.startswith("SAMOPS_")}
    unknown = subprocess.run(
        [str(samops), "validate", str(tmp_path)], env=base, capture_output=True, text=True
    )
    assert unknown.returncode == 0  # the serving host's policy is unknown here
    known = subprocess.run(
        [str(samops), "validate", str(tmp_path)],
        env={**base, "SAMOPS_SECRETS_ENV": "TEAM_*"},
        capture_output=True,
        text=True,
    )
    assert known.returncode == 1
    assert known.stdout.splitlines()[0] == (
        f"{tmp_path}/secret.yaml:10:12: spec.config.valueFrom.env: error: the environment "
        "variable OPENAI_API_KEY is not one this host lets manifests read"
    )
    assert "SAMOPS_SECRETS_ENV=OPENAI_API_KEY" in known.stdout
