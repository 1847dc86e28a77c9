"""A document with errors still takes part in the revision's checks, so one run reports
everything and never invents "missing" errors about a resource that is only broken."""

from __future__ import annotations

from tests.conftest import rendered, validate_text

CLIENT_AND_BROKEN_PLUGIN = """\
apiVersion: smarter.sh/v1
kind: LLMClient
metadata:
  name: bot
spec:
  config: {defaultModel: gpt-4o}
  plugins: [faq]
---
apiVersion: smarter.sh/v1
kind: Plugin
metadata:
  name: faq
spec:
  selector: {directive: always}
  prompt: {systemRole: Answer from the FAQ., temperature: 7}
  data: {staticData: {hours: 9 to 5}}
"""


def test_reference_to_a_broken_resource_is_not_reported_missing() -> None:
    revision = validate_text(CLIENT_AND_BROKEN_PLUGIN)
    assert rendered(revision.diagnostics) == [
        "m.yaml:15:59: spec.prompt.temperature: error: Input should be less than or equal to 1 "
        "(got 7)"
    ]


def test_unrecoverable_document_still_declares_its_name() -> None:
    text = CLIENT_AND_BROKEN_PLUGIN.replace("  data: {staticData: {hours: 9 to 5}}\n", "")
    revision = validate_text(text)
    assert rendered(revision.diagnostics) == [
        "m.yaml:13:1: spec.data: error: the required key 'data' is missing",
        "m.yaml:15:59: spec.prompt.temperature: error: Input should be less than or equal to 1 "
        "(got 7)",
    ]


def test_rule_of_a_mapping_waits_for_its_fields_to_be_valid() -> None:
    """A cross-field rule of a mapping whose field is invalid may depend on that field, so it
    is not guessed at: it is reported once the field is fixed (no false errors)."""
    text = """\
        apiVersion: smarter.sh/v1
        kind: SqlConnection
        metadata: {name: db}
        spec:
          connection:
            dbEngine: django.db.backends.postgresql
            database: reports
            port: 70000
        """
    assert rendered(validate_text(text).diagnostics) == [
        "m.yaml:8:11: spec.connection.port: error: Input should be less than 65536 (got 70000)",
    ]
    assert rendered(validate_text(text.replace("70000", "5432")).diagnostics) == [
        "m.yaml:5:3: spec.connection: error: django.db.backends.postgresql needs a hostname",
    ]


def test_rule_of_another_mapping_is_reported_with_field_errors() -> None:
    revision = validate_text("""\
        apiVersion: smarter.sh/v1
        kind: SqlConnection
        metadata: {name: db, version: "1.0"}
        spec:
          connection: {dbEngine: django.db.backends.postgresql, database: reports}
        """)
    assert [d.path for d in revision.diagnostics] == ["metadata.version", "spec.connection"]


def test_errors_in_one_document_do_not_hide_its_reference_errors() -> None:
    revision = validate_text("""\
        apiVersion: smarter.sh/v1
        kind: LLMClient
        metadata: {name: bot}
        spec:
          config: {defaultTemperature: 3}
          plugins: [nowhere]
          functions: [stockprice]
        """)
    assert [d.code for d in revision.diagnostics] == [
        "invalid-value",
        "missing-reference",
        "unknown-function",
    ]


def test_unrecoverable_document_still_has_its_references_checked() -> None:
    """An undeclared placeholder fails the whole ``sqlData`` (and so the document cannot be
    recovered), yet the same run reports the connection that does not exist."""
    revision = validate_text("""\
        apiVersion: smarter.sh/v1
        kind: SqlPlugin
        metadata: {name: courses, pluginClass: sql}
        spec:
          connection: nodb
          selector: {directive: always}
          prompt: {systemRole: Look courses up., provider: nope}
          sqlData:
            sqlQuery: SELECT * FROM courses WHERE id = {x}
        """)
    assert [(d.code, d.path) for d in revision.diagnostics] == [
        ("missing-reference", "spec.connection"),
        ("missing-reference", "spec.prompt.provider"),
        ("invalid-value", "spec.sqlData.sqlQuery"),
    ]
