"""Every kind survives the database unchanged: rows read back as exactly the fields written,
and ``describe`` prints SAM that validates to the same fields again."""

from __future__ import annotations

import textwrap
from pathlib import Path

import yaml
from sqlalchemy import Engine, select

from reconciler.apply import apply_revision
from reconciler.desired import desired_state
from reconciler.report import describe
from reconciler.sam.revision import Revision
from reconciler.sealing import generate_keypair, seal
from reconciler.source import DirectorySource, validate_source
from reconciler.store import schema
from reconciler.store.read import read_actual
from tests.conftest import MANIFESTS, validate_text

PUBLIC_KEY, _ = generate_keypair()
EXTRA = textwrap.dedent(f"""\
    apiVersion: smarter.sh/v1
    kind: Secret
    metadata: {{name: from_file, tags: [x], annotations: [{{a.b/c: "1"}}], version: 1.0.0}}
    spec: {{config: {{valueFrom: {{file: /run/secrets/db}}, expiration_date: 2027-01-31}}}}
    ---
    apiVersion: smarter.sh/v1
    kind: Secret
    metadata: {{name: sealed}}
    spec: {{config: {{encryptedValue: "{seal("v", secret_name="sealed", public_key=PUBLIC_KEY)}"}}}}
    ---
    apiVersion: smarter.sh/v1
    kind: Provider
    metadata: {{name: vllm, description: A local server}}
    spec: {{provider: {{base_url: "http://127.0.0.1:8000/v1", api_key: sealed,
                       contact_email: ops@example.com, logo: "https://example.com/l.png",
                       terms_of_service_url: "https://example.com/tos"}}}}
    ---
    apiVersion: smarter.sh/v1
    kind: SqlConnection
    metadata: {{name: reports}}
    spec:
      connection: {{dbEngine: django.db.backends.postgresql, hostname: db.internal, port: 5432,
                    database: reports, username: reader, password: from_file, useSsl: true,
                    proxyHost: proxy, proxyPort: 3128, proxyPassword: sealed,
                    authenticationMethod: tcpip}}
    ---
    apiVersion: smarter.sh/v1
    kind: SmarterAuthToken
    metadata: {{name: rotating_key}}
    spec:
      config:
        isActive: true
        expiresAt: 2027-06-01T12:30:00Z
        digest:
          - sha256:{"a" * 64}
          - sha512:{"b" * 128}
    ---
    apiVersion: smarter.sh/v1
    kind: LLMClient
    metadata: {{name: internal, accountNumber: 1234-5678-9012, username: ops}}
    spec:
      apiKey: rotating_key
      config:
        provider: vllm
        customDomain: {{domain_name: chat.example.com}}
        subdomain: internal
      plugins: [everlasting_gobstopper, stackademy_catalogue]
      functions: [weather]
    ---
    apiVersion: smarter.sh/v1
    kind: LLMClient
    metadata: {{name: current_format, version: 2.0.0}}
    spec:
      config:
        prompt:
          provider: vllm
          defaultModel: qwen
          defaultSystemRole: You answer briefly.
          appName: Current
          allowedOrigins: [https://chat.example.com]
        styles:
          appLogoUrl: https://example.com/logo.png
          fontFamily: Inter
          buttons: {{color: "#333"}}
      extensions: [calculator, datemath]
      plugins: [everlasting_gobstopper]
    """)


def _revision(tmp_path: Path) -> Revision:
    for path in MANIFESTS.rglob("*.yaml"):
        target = tmp_path / "repo" / path.relative_to(MANIFESTS)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(path.read_text())
    (tmp_path / "repo" / "extra.yaml").write_text(EXTRA)
    revision = validate_source(DirectorySource(tmp_path / "repo"))
    assert revision.valid, revision.diagnostics
    return revision


def test_every_kind_reads_back_exactly(engine: Engine, tmp_path: Path) -> None:
    revision = _revision(tmp_path)
    apply_revision(engine, revision)
    with engine.connect() as connection:
        actual = read_actual(connection)
    desired = desired_state(revision.resources)
    assert {k for k, _ in desired} == set(schema_kinds := {k for k, _ in actual})
    assert len(schema_kinds) == 10
    for identity, state in desired.items():
        assert actual[identity].fields == state.fields, identity
        assert actual[identity].file == state.file


def test_every_row_reads_back_as_the_typed_model_of_its_manifest(
    engine: Engine, tmp_path: Path
) -> None:
    """What the serving snapshot and reports read (``ResourceState.model``) is the same typed
    model from a row as from the manifest it was applied from."""
    revision = _revision(tmp_path)
    apply_revision(engine, revision)
    with engine.connect() as connection:
        actual = read_actual(connection)
    for identity, state in desired_state(revision.resources).items():
        assert type(actual[identity].model) is type(state.model), identity
        assert actual[identity].model == state.model, identity


def test_describe_round_trips_every_resource(engine: Engine, tmp_path: Path) -> None:
    revision = _revision(tmp_path)
    apply_revision(engine, revision)
    desired = desired_state(revision.resources)
    for (kind, name), state in desired.items():
        text = yaml.safe_dump(describe(engine, kind, name), sort_keys=False)
        again = validate_text(text, state.file, check_references=False)
        assert again.valid, (kind, name, again.diagnostics)
        assert desired_state(again.resources)[(kind, name)].fields == state.fields


def test_no_secret_value_reaches_the_database(engine: Engine) -> None:
    revision = validate_text(
        """\
        apiVersion: smarter.sh/v1
        kind: Secret
        metadata: {name: legacy}
        spec: {config: {value: correct-horse-battery-staple}}
        """,
        allow_plaintext_secrets=True,
    )
    apply_revision(engine, revision)
    with engine.connect() as connection:
        rows = connection.execute(select(schema.secrets)).mappings().all()
        dump = repr([dict(r) for r in rows]) + repr(
            connection.execute(select(schema.syncs)).mappings().all()
        )
    assert "correct-horse" not in dump
    assert rows[0]["value_source"] == "plaintext"
    assert rows[0]["value_fingerprint"].startswith("sha256:")


LEGACY = """\
apiVersion: smarter.sh/v1
kind: Secret
metadata: {name: legacy}
spec: {config: {value: correct-horse-battery-staple}}
"""


def test_a_plaintext_fingerprint_is_keyed_per_database(engine: Engine, tmp_path: Path) -> None:
    # Issue 12, item 19: fingerprints were unsalted SHA-256 cut to 16 hex characters, so a
    # dictionary run over a plan or a row recovered the value.
    import hashlib

    from reconciler.apply import plan_revision
    from reconciler.store.db import open_database

    revision = validate_text(LEGACY, allow_plaintext_secrets=True)
    apply_revision(engine, revision)
    unkeyed = hashlib.sha256(b"samops-secret\0legacy\0correct-horse-battery-staple").hexdigest()

    def stored(on: Engine) -> str:
        with on.connect() as connection:
            return str(connection.execute(select(schema.secrets.c.value_fingerprint)).scalar())

    assert stored(engine) != f"sha256:{unkeyed[:16]}"
    assert plan_revision(engine, revision).empty  # the database's key is stable
    apply_revision(engine, validate_text(LEGACY + "\n", allow_plaintext_secrets=True))
    assert plan_revision(engine, revision).empty
    other = open_database(f"sqlite:///{tmp_path / 'other.sqlite3'}")
    apply_revision(other, revision)
    assert stored(other) != stored(engine)  # another database, another key
    other.dispose()


def test_describe_writes_a_client_in_the_format_its_file_used(
    engine: Engine, tmp_path: Path
) -> None:
    apply_revision(engine, _revision(tmp_path))
    current = describe(engine, "LLMClient", "current_format")["spec"]
    assert current == {
        "config": {
            "prompt": {
                "provider": "vllm",
                "defaultModel": "qwen",
                "defaultSystemRole": "You answer briefly.",
                "appName": "Current",
                "allowedOrigins": ["https://chat.example.com"],
            },
            "styles": {
                "appLogoUrl": "https://example.com/logo.png",
                "fontFamily": "Inter",
                "buttons": {"color": "#333"},
            },
        },
        "plugins": ["everlasting_gobstopper"],
        "extensions": ["calculator", "date_calculator"],
    }
    older = describe(engine, "LLMClient", "internal")["spec"]
    assert older["config"]["provider"] == "vllm" and older["functions"] == ["get_current_weather"]
    assert "prompt" not in older["config"] and "manifestFormat" not in older
