"""Every real Smarter manifest in ../shared/smarter-examples/ loads.

The files are validated one at a time (the set's references are incomplete). Each file must
load into a resource with no schema error, and its warnings must be exactly those SAM.md
announces: Smarter-ignored keys, normalised names, plaintext secrets (allowed here), plus the
repair of an unquoted ': ' in two files that are not valid YAML as published. The reference
errors expected from a lone file are listed too, so nothing else can slip in.
"""

from __future__ import annotations

import os

import pytest
import yaml

from tests.conftest import SMARTER_EXAMPLES, validate_text

IGNORED = "ignored-key"
RENAMED = "name-normalised"
PLAINTEXT = "plaintext-secret"
COLON = "yaml-unquoted-colon"
MISSING = "missing-reference"

EXPECTED: dict[str, tuple[list[tuple[str, str]], list[tuple[str, str]]]] = {
    # file: ([(warning code, path)], [(reference error code, path)])
    "api-connection.yaml": (
        [(COLON, ""), (RENAMED, "spec.connection.apiKey")],
        [(MISSING, "spec.connection.apiKey"), (MISSING, "spec.connection.proxyPassword")],
    ),
    "api-plugin.yaml": ([], [(MISSING, "spec.connection")]),
    "auth-token.yaml": ([(RENAMED, "metadata.name")], []),
    "llm_client.yaml": (
        [(IGNORED, "spec.config.dnsVerificationStatus")],
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


def test_every_example_file_is_covered() -> None:
    assert sorted(os.listdir(SMARTER_EXAMPLES)) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_smarter_example_loads_with_only_the_announced_warnings(name: str) -> None:
    expected_warnings, expected_errors = EXPECTED[name]
    revision = validate_text(
        (SMARTER_EXAMPLES / name).read_text(), name, allow_plaintext_secrets=True
    )

    assert len(revision.resources) == 1
    assert not revision.resources[0].partial
    assert sorted((d.code, d.path) for d in revision.warnings) == sorted(expected_warnings)
    assert sorted((d.code, d.path) for d in revision.errors) == sorted(expected_errors)


def test_ignored_description_becomes_the_tool_description() -> None:
    document = yaml.safe_load((SMARTER_EXAMPLES / "plugin.yaml").read_text())
    del document["metadata"]["description"]
    revision = validate_text(yaml.safe_dump(document), check_references=False)
    assert revision.valid, revision.diagnostics
    description = revision.resources[0].model.metadata.description
    assert description == document["spec"]["data"]["description"].strip()
