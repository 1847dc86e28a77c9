"""``samops secrets seal FILE...`` migrates plaintext Secret manifests in place: values
sealed to the daemon's key, every other line kept, nothing half-written."""

from __future__ import annotations

import textwrap
from pathlib import Path

import yaml

from reconciler.sealing import unseal
from tests.test_cli import run

SECRETS = """\
# Copied from our Smarter repository.
apiVersion: smarter.sh/v1
kind: Secret
metadata:
  name: DB-Password   # Smarter's spelling
  description: The catalogue's database password.
spec:
  config:
    value: "s3cret: with a colon"   # the old way
    expiration_date: 2027-01-01
---
apiVersion: smarter.sh/v1
kind: Secret
metadata: {name: api_token}
spec:
  config:
    value: |
      multi
      line
---
apiVersion: smarter.sh/v1
kind: Secret
metadata: {name: from_env}
spec:
  config:
    valueFrom: {env: FROM_ENV}
"""


def _keys(tmp_path: Path) -> tuple[str, str]:
    code, public = run("secrets", "keygen", "--out", str(tmp_path / "daemon.key"))
    assert code == 0
    return public.strip(), (tmp_path / "daemon.key").read_text().strip()


def test_plaintext_values_are_sealed_in_place_and_the_rest_is_kept(tmp_path: Path) -> None:
    public, private = _keys(tmp_path)
    manifests = tmp_path / "manifests"
    manifests.mkdir()
    path = manifests / "secrets.yaml"
    path.write_text(SECRETS)
    refused, output = run("validate", str(manifests))
    assert refused == 1 and "samops secrets seal FILE" in output

    code, output = run("secrets", "seal", str(path), "--public-key", public)

    assert code == 0, output
    assert output.splitlines() == [
        f"{path}:9: sealed Secret 'db_password'",
        f"{path}:17: sealed Secret 'api_token'",
        "2 secret(s) sealed; commit the files (the old values stay in git history)",
    ]
    text = path.read_text()
    assert "s3cret" not in text and "multi" not in text
    assert "# Copied from our Smarter repository." in text
    assert "name: DB-Password   # Smarter's spelling" in text
    assert "    expiration_date: 2027-01-01\n" in text
    assert "valueFrom: {env: FROM_ENV}" in text
    first, second, _ = yaml.safe_load_all(text)
    sealed = first["spec"]["config"]["encryptedValue"]
    assert unseal(sealed, secret_name="db_password", private_key=private) == "s3cret: with a colon"
    sealed = second["spec"]["config"]["encryptedValue"]
    assert unseal(sealed, secret_name="api_token", private_key=private) == "multi\nline\n"
    assert run("validate", str(manifests))[0] == 0
    again, output = run("secrets", "seal", str(path), "--public-key", public)
    assert (again, output.strip()) == (0, "no plaintext Secret value found; nothing changed")


def test_a_file_that_is_not_yaml_is_left_untouched(tmp_path: Path) -> None:
    public, _ = _keys(tmp_path)
    broken = tmp_path / "broken.yaml"
    broken.write_text(textwrap.dedent("kind: Secret\nspec: {config: {value: [unclosed\n"))
    before = broken.read_text()
    code, output = run("secrets", "seal", str(broken), "--public-key", public)
    assert code == 1 and output.startswith(f"error: {broken}: not valid YAML")
    assert broken.read_text() == before
    assert list(tmp_path.glob(".broken.yaml.*")) == []


def test_seal_needs_a_public_key(tmp_path: Path) -> None:
    (tmp_path / "s.yaml").write_text(SECRETS)
    code, output = run("secrets", "seal", str(tmp_path / "s.yaml"))
    assert code == 2 and "--public-key" in output
