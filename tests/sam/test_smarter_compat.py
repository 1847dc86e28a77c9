"""Smarter's manifests load: the project's own Smarter-format cases, and the published examples.

``tests/sam/smarter_format/`` holds manifests written here in Smarter's shape (see its README);
they always run. ``../shared/smarter-examples/`` holds Smarter's published examples: checked when
present, and required under ``CI=true`` (``shared_corpus``).

Files are validated one at a time (a lone file's references are incomplete). Each must load into
a resource with no schema error, and its warnings must be exactly those SAM.md announces:
Smarter-ignored keys, normalised names, plaintext secrets (allowed here), settings kept for
Smarter that do nothing here (``subdomain``), plus the repair of an
unquoted ': ' that is not valid YAML as Smarter publishes it. The reference errors expected from
a lone file are listed too, so nothing else can slip in.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from reconciler.sam.load import LoadOptions
from reconciler.source import DirectorySource, validate_source
from tests.conftest import shared_corpus, validate_text

SMARTER_FORMAT = Path(__file__).parent / "smarter_format"

IGNORED = "ignored-key"
RENAMED = "name-normalised"
PLAINTEXT = "plaintext-secret"
COLON = "yaml-unquoted-colon"
MISSING = "missing-reference"
KEPT = "not-acted-on"

Expectation = tuple[list[tuple[str, str]], list[tuple[str, str]]]

OWN: dict[str, Expectation] = {
    # file: ([(warning code, path)], [(reference error code, path)])
    "weather-connection.yaml": (
        [(COLON, ""), (RENAMED, "spec.connection.apiKey")],
        [(MISSING, "spec.connection.apiKey"), (MISSING, "spec.connection.proxyPassword")],
    ),
    "weather-plugin.yaml": ([], [(MISSING, "spec.connection")]),
    "librarian-token.yaml": ([(RENAMED, "metadata.name")], []),
    "librarian.yaml": (
        [(IGNORED, "spec.config.dnsVerificationStatus"), (KEPT, "spec.config.subdomain")],
        [
            (MISSING, "spec.apiKey"),
            ("unknown-function", "spec.functions[2]"),  # horoscope: not a Smarter function
            (MISSING, "spec.plugins[0]"),
            (MISSING, "spec.plugins[1]"),
        ],
    ),
    "opening-hours-plugin.yaml": ([(IGNORED, "spec.data.description")], []),
    "catalogue-password.yaml": (
        [(IGNORED, "spec.config.description"), (PLAINTEXT, "spec.config.value")],
        [],
    ),
    "catalogue-connection.yaml": (
        [(COLON, "")],
        [(MISSING, "spec.connection.password"), (MISSING, "spec.connection.proxyPassword")],
    ),
    "loan-lookup-plugin.yaml": (
        [(IGNORED, "spec.sqlData.description")],
        [(MISSING, "spec.connection")],
    ),
}

SHARED: dict[str, tuple[list[tuple[str, str]], list[tuple[str, str]]]] = {
    # file: ([(warning code, path)], [(reference error code, path)])
    "api-connection.yaml": (
        [(COLON, ""), (RENAMED, "spec.connection.apiKey")],
        [(MISSING, "spec.connection.apiKey"), (MISSING, "spec.connection.proxyPassword")],
    ),
    "api-plugin.yaml": ([], [(MISSING, "spec.connection")]),
    "auth-token.yaml": ([(RENAMED, "metadata.name")], []),
    "llm_client.yaml": (
        [(IGNORED, "spec.config.dnsVerificationStatus"), (KEPT, "spec.config.subdomain")],
        [
            (MISSING, "spec.apiKey"),
            ("unknown-function", "spec.functions[2]"),  # stockprice: Smarter rejects it too
            (MISSING, "spec.plugins[0]"),
            (MISSING, "spec.plugins[1]"),
        ],
    ),
    "plugin.yaml": ([(IGNORED, "spec.data.description")], []),
    "secret-smarter-test-db.yaml": (
        [(IGNORED, "spec.config.description"), (PLAINTEXT, "spec.config.value")],
        [],
    ),
    "secret.yaml": ([(IGNORED, "spec.config.description"), (PLAINTEXT, "spec.config.value")], []),
    "sql-connection.yaml": (
        [(COLON, "")],
        [(MISSING, "spec.connection.password"), (MISSING, "spec.connection.proxyPassword")],
    ),
    "sql-plugin.yaml": ([(IGNORED, "spec.sqlData.description")], [(MISSING, "spec.connection")]),
    "stackademy-llm_client-api.yaml": ([], [(MISSING, "spec.plugins[0]")]),
    "stackademy-llm_client-sql.yaml": ([], [(MISSING, "spec.plugins[0]")]),
    "stackademy-plugin-api.yaml": ([], [(MISSING, "spec.connection")]),
    "stackademy-plugin-sql.yaml": (
        [(IGNORED, "spec.sqlData.description")],
        [(MISSING, "spec.connection")],
    ),
}


def _assert_loads_with_only(path: Path, expected: Expectation) -> None:
    expected_warnings, expected_errors = expected
    revision = validate_text(path.read_text(), path.name, allow_plaintext_secrets=True)

    assert len(revision.resources) == 1
    assert not revision.resources[0].partial
    assert sorted((d.code, d.path) for d in revision.warnings) == sorted(expected_warnings)
    assert sorted((d.code, d.path) for d in revision.errors) == sorted(expected_errors)


def test_every_own_case_is_covered() -> None:
    assert sorted(p.name for p in SMARTER_FORMAT.glob("*.yaml")) == sorted(OWN)


@pytest.mark.parametrize("name", sorted(OWN))
def test_smarter_format_case_loads_with_only_the_announced_warnings(name: str) -> None:
    _assert_loads_with_only(SMARTER_FORMAT / name, OWN[name])


def test_smarter_format_cases_resolve_each_other_as_one_revision() -> None:
    # Names written with '-' (librarian-kiosk-key) are found under Smarter's snake_case form;
    # a key with no digest cannot authenticate anyone in samops (keys live in git as digests).
    revision = validate_source(
        DirectorySource(SMARTER_FORMAT), options=LoadOptions(allow_plaintext_secrets=True)
    )
    assert sorted((d.file, d.code, d.path) for d in revision.errors) == [
        ("catalogue-connection.yaml", MISSING, "spec.connection.proxyPassword"),
        ("librarian.yaml", "key-without-digest", "spec.apiKey"),
        ("librarian.yaml", "unknown-function", "spec.functions[2]"),
        ("weather-connection.yaml", MISSING, "spec.connection.apiKey"),
        ("weather-connection.yaml", MISSING, "spec.connection.proxyPassword"),
    ]


def test_every_published_example_is_covered() -> None:
    assert sorted(os.listdir(shared_corpus("smarter-examples"))) == sorted(SHARED)


@pytest.mark.parametrize("name", sorted(SHARED))
def test_published_smarter_example_loads_with_only_the_announced_warnings(name: str) -> None:
    _assert_loads_with_only(shared_corpus("smarter-examples") / name, SHARED[name])


@pytest.mark.parametrize(
    ("folder", "name"),
    [
        pytest.param(SMARTER_FORMAT, "opening-hours-plugin.yaml", id="own"),
        pytest.param(None, "plugin.yaml", id="published"),
    ],
)
def test_ignored_description_becomes_the_tool_description(folder: Path | None, name: str) -> None:
    folder = folder or shared_corpus("smarter-examples")
    document = yaml.safe_load((folder / name).read_text())
    del document["metadata"]["description"]
    revision = validate_text(yaml.safe_dump(document), check_references=False)
    assert revision.valid, revision.diagnostics
    description = revision.resources[0].model.metadata.description
    assert description == document["spec"]["data"]["description"].strip()
