"""Every validation rule of SAM.md, as a table of invalid manifests, one per rule.

Each case asserts the whole list of rendered diagnostics (``file:line:col: key.path: severity:
message (got value)``), so it proves both where the problem is reported and that nothing else
is. The YAML of each case is written from column 0 so that a column in an expectation can be
checked by counting the characters of the case itself.
"""

from __future__ import annotations

import json
import textwrap

import pytest

from reconciler.sam.diagnostics import Diagnostic
from reconciler.sam.kinds import SqlPlugin
from reconciler.sam.revision import validate_files
from reconciler.source import SourceFile, blob_sha
from tests.conftest import rendered, validate_text

KINDS_HINT = (
    "kinds: LLMClient, Plugin, SqlPlugin, ApiPlugin, SqlConnection, ApiConnection, Secret, "
    "Provider, SmarterAuthToken, Budget"
)
DIGEST = "sha256:" + "0" * 64
SECRET_VALUE = "sk-live-4f9a2c"
"""A plaintext secret that must never be echoed."""
PASTED_CREDENTIAL = "sk_live_4f9a2c"
"""A credential pasted where a Secret's name belongs (it is a valid name, so it loads)."""

# --- cases that more than one test uses -----------------------------------------------------

UNKNOWN_KEY = """\
apiVersion: smarter.sh/v1
kind: LLMClient
metadata: {name: bot}
spec:
  config:
    defaultTemprature: 0.2
"""
CREDENTIAL_IN_TOKEN = """\
apiVersion: smarter.sh/v1
kind: SmarterAuthToken
metadata: {name: bot_key}
spec:
  config:
    key: abc123
"""
UNKNOWN_KIND = """\
apiVersion: smarter.sh/v1
kind: LLMClinet
metadata: {name: bot}
spec: {}
"""
MISSING_PLUGIN = """\
apiVersion: smarter.sh/v1
kind: LLMClient
metadata: {name: bot}
spec:
  config: {}
  plugins: [faqs]
---
apiVersion: smarter.sh/v1
kind: Plugin
metadata: {name: faq}
spec:
  selector: {directive: always}
  prompt: {systemRole: Answer from the FAQ.}
  data: {staticData: {hours: 9 to 5}}
"""
UNKNOWN_FUNCTION = """\
apiVersion: smarter.sh/v1
kind: LLMClient
metadata: {name: bot}
spec:
  config: {}
  functions: [calculater]
"""
MISSING_SECRET = f"""\
apiVersion: smarter.sh/v1
kind: SqlConnection
metadata: {{name: db}}
spec:
  connection:
    dbEngine: django.db.backends.postgresql
    hostname: db.example
    database: reports
    password: {PASTED_CREDENTIAL}
"""
LONG_ANNOTATION = f"""\
apiVersion: smarter.sh/v1
kind: LLMClient
metadata:
  name: bot
  annotations:
    - notes: {"x" * 2049}
spec:
  config: {{}}
"""


# --- per-document rules ---------------------------------------------------------------------

DOCUMENT_RULES = [
    # Unknown and ignored keys
    pytest.param(
        UNKNOWN_KEY,
        ["m.yaml:6:5: spec.config.defaultTemprature: error: unknown key 'defaultTemprature'"],
        id="unknown-key-suggests-closest",
    ),
    pytest.param(
        CREDENTIAL_IN_TOKEN,
        ["m.yaml:6:5: spec.config.key: error: unknown key 'key'"],
        id="credential-key-in-token-is-refused",
    ),
    pytest.param(
        """\
apiVersion: smarter.sh/v1
kind: Secret
metadata: {name: token}
spec:
  config: {valueFrom: {env: TOKEN}}
status:
  created: 2024-06-15
""",
        [
            "m.yaml:6:1: status: warning: the key 'status' is ignored "
            "(it is output, written by the server)"
        ],
        id="top-level-status-is-ignored-with-warning",
    ),
    pytest.param(
        """\
apiVersion: smarter.sh/v1
kind: LLMClient
metadata: {name: bot}
spec:
  config:
    dnsVerificationStatus: Verified
""",
        [
            "m.yaml:6:5: spec.config.dnsVerificationStatus: warning: the key "
            "'dnsVerificationStatus' is ignored (set by Smarter's DNS check)"
        ],
        id="dns-verification-status-is-ignored-with-warning",
    ),
    pytest.param(
        """\
apiVersion: smarter.sh/v1
kind: Plugin
metadata: {name: faq}
spec:
  selector: {directive: always}
  prompt: {systemRole: Answer from the FAQ.}
  data:
    description: Opening hours.
    staticData: {hours: 9 to 5}
""",
        [
            "m.yaml:8:5: spec.data.description: warning: the key 'description' is ignored "
            "(Smarter ignores it)"
        ],
        id="plugin-data-description-is-ignored-with-warning",
    ),
    pytest.param(
        """\
apiVersion: smarter.sh/v1
kind: SqlPlugin
metadata: {name: courses}
spec:
  selector: {directive: always}
  prompt: {systemRole: List courses.}
  connection: db
  sqlData:
    description: All courses.
    sqlQuery: SELECT * FROM courses
""",
        [
            "m.yaml:9:5: spec.sqlData.description: warning: the key 'description' is ignored "
            "(Smarter ignores it)"
        ],
        id="sql-data-description-is-ignored-with-warning",
    ),
    pytest.param(
        """\
apiVersion: smarter.sh/v1
kind: Secret
metadata: {name: token}
spec:
  config:
    description: The API token.
    valueFrom: {env: TOKEN}
""",
        [
            "m.yaml:6:5: spec.config.description: warning: the key 'description' is ignored "
            "(Smarter ignores it)"
        ],
        id="secret-config-description-is-ignored-with-warning",
    ),
    # Names
    pytest.param(
        """\
apiVersion: smarter.sh/v1
kind: LLMClient
metadata:
  name: Support-Bot
spec:
  config:
    provider: Local Model
""",
        [
            "m.yaml:4:3: metadata.name: warning: the name 'Support-Bot' is read as "
            "'support_bot' (Smarter's snake_case rule)",
            "m.yaml:7:5: spec.config.provider: warning: the name 'Local Model' is read as "
            "'local_model' (Smarter's snake_case rule)",
        ],
        id="normalised-names-warn-with-both-spellings",
    ),
    pytest.param(
        """\
apiVersion: smarter.sh/v1
kind: LLMClient
metadata: {name: bot}
spec:
  config: {}
  plugins:
    - Opening-Hours
""",
        [
            "m.yaml:7:7: spec.plugins[0]: warning: the name 'Opening-Hours' is read as 'opening_hours' (Smarter's snake_case rule)",
        ],
        id="normalised-reference-in-block-list-points-at-the-item",
    ),
    pytest.param(
        """\
apiVersion: smarter.sh/v1
kind: LLMClient
metadata:
  name: a_name_that_goes_on_and_on_well_past_the_fifty_char_limit
spec:
  config: {}
""",
        [
            "m.yaml:4:9: metadata.name: error: String should have at most 50 characters "
            "(got 'a_name_that_goes_on_and_on_well_past_the_fifty_char_limit')"
        ],
        id="name-over-50-characters",
    ),
    pytest.param(
        """\
apiVersion: smarter.sh/v1
kind: LLMClient
metadata:
  name: bot.v2
spec:
  config: {}
""",
        [
            "m.yaml:4:9: metadata.name: error: expected a snake_case name: lowercase letters, digits and '_' (got 'bot.v2')",
        ],
        id="name-with-invalid-characters",
    ),
    # Metadata
    pytest.param(
        """\
apiVersion: smarter.sh/v1
kind: LLMClient
metadata:
  name: bot
  version: "1.0"
spec:
  config: {}
""",
        [
            "m.yaml:5:12: metadata.version: error: expected a SemVer 2.0 version such as 1.2.0 or 2.0.0-beta.1 (got '1.0')",
        ],
        id="version-not-semver",
    ),
    pytest.param(
        """\
apiVersion: smarter.sh/v1
kind: LLMClient
metadata:
  name: bot
  annotations:
    - team owner: search
spec:
  config: {}
""",
        [
            "m.yaml:6:7: metadata.annotations[0]: error: the annotation key 'team owner' may only use letters, digits and ._/-",
        ],
        id="annotation-key-with-bad-characters",
    ),
    pytest.param(
        """\
apiVersion: smarter.sh/v1
kind: LLMClient
metadata:
  name: bot
  annotations:
    - team: search
    - team owner: ana
spec:
  config: {}
""",
        [
            "m.yaml:7:7: metadata.annotations[1]: error: the annotation key 'team owner' may only use letters, digits and ._/-",
        ],
        id="bad-annotation-after-a-good-one-points-at-its-item",
    ),
    pytest.param(
        """\
apiVersion: smarter.sh/v1
kind: LLMClient
metadata:
  name: bot
  annotations:
    - {team: search, owner: ana}
spec:
  config: {}
""",
        [
            "m.yaml:6:7: metadata.annotations[0]: error: an annotation is a mapping with exactly one key",
        ],
        id="annotation-item-with-two-keys",
    ),
    pytest.param(
        LONG_ANNOTATION,
        [
            "m.yaml:6:7: metadata.annotations[0]: error: the value of the annotation 'notes' is over 2048 characters",
        ],
        id="annotation-value-over-2048-characters",
    ),
    # Envelope
    pytest.param(
        """\
apiVersion: smarter.sh/v2
kind: LLMClient
metadata: {name: bot}
spec:
  config: {}
""",
        [
            "m.yaml:1:13: apiVersion: error: Input should be 'smarter.sh/v1' or "
            "'smarter.sh/v0' (got 'smarter.sh/v2')"
        ],
        id="api-version-not-smarter-v1-or-v0",
    ),
    pytest.param(
        UNKNOWN_KIND,
        ["m.yaml:2:7: kind: error: unknown kind 'LLMClinet'"],
        id="unknown-kind",
    ),
    pytest.param(
        """\
apiVersion: smarter.sh/v1
metadata: {name: bot}
spec: {}
""",
        ["m.yaml:1:1: kind: error: the key 'kind' is missing"],
        id="missing-kind",
    ),
    pytest.param(
        """\
- apiVersion: smarter.sh/v1
- kind: LLMClient
""",
        [
            "m.yaml:1:1: error: a manifest must be a mapping with apiVersion, kind, metadata and "
            "spec (got [{'apiVersion': 'smarter.sh/v1'}, {'kind': 'LLMClient'}])",
        ],
        id="document-is-a-list-not-a-mapping",
    ),
    # Required keys
    pytest.param(
        """\
apiVersion: smarter.sh/v1
kind: LLMClient
metadata: {name: bot}
""",
        ["m.yaml:1:1: spec: error: the required key 'spec' is missing"],
        id="missing-spec",
    ),
    pytest.param(
        """\
apiVersion: smarter.sh/v1
kind: LLMClient
metadata: {name: bot}
spec:
  plugins: []
""",
        ["m.yaml:4:1: spec.config: error: the required key 'config' is missing"],
        id="missing-llm-client-config",
    ),
    pytest.param(
        """\
apiVersion: smarter.sh/v1
kind: Plugin
metadata: {name: faq}
spec:
  selector: {directive: always}
  prompt:
    temperature: 0.1
  data: {staticData: {hours: 9 to 5}}
""",
        ["m.yaml:6:3: spec.prompt.systemRole: error: the required key 'systemRole' is missing"],
        id="missing-plugin-system-role",
    ),
    # Numeric ranges
    pytest.param(
        """\
apiVersion: smarter.sh/v1
kind: LLMClient
metadata: {name: bot}
spec:
  config:
    defaultTemperature: 1.5
""",
        [
            "m.yaml:6:25: spec.config.defaultTemperature: error: Input should be less than or "
            "equal to 1 (got 1.5)"
        ],
        id="default-temperature-above-1",
    ),
    pytest.param(
        """\
apiVersion: smarter.sh/v1
kind: LLMClient
metadata: {name: bot}
spec:
  config:
    defaultMaxTokens: 0
""",
        [
            "m.yaml:6:23: spec.config.defaultMaxTokens: error: Input should be greater than 0 "
            "(got 0)"
        ],
        id="default-max-tokens-zero",
    ),
    pytest.param(
        """\
apiVersion: smarter.sh/v1
kind: Plugin
metadata: {name: faq}
spec:
  selector: {directive: always}
  prompt:
    systemRole: Answer from the FAQ.
    temperature: -0.5
  data: {staticData: {hours: 9 to 5}}
""",
        [
            "m.yaml:8:18: spec.prompt.temperature: error: Input should be greater than or "
            "equal to 0 (got -0.5)"
        ],
        id="plugin-temperature-out-of-range",
    ),
    # Plugins
    pytest.param(
        """\
apiVersion: smarter.sh/v1
kind: Plugin
metadata: {name: faq}
spec:
  selector:
    directive: search_terms
  prompt: {systemRole: Answer from the FAQ.}
  data: {staticData: {hours: 9 to 5}}
""",
        [
            "m.yaml:5:3: spec.selector: error: the 'search_terms' directive needs a non-empty "
            "searchTerms list"
        ],
        id="search-terms-directive-without-search-terms",
    ),
    pytest.param(
        """\
apiVersion: smarter.sh/v1
kind: Plugin
metadata: {name: faq}
spec:
  selector:
    directive: llm
  prompt: {systemRole: Answer from the FAQ.}
  data: {staticData: {hours: 9 to 5}}
""",
        [
            "m.yaml:5:3: spec.selector: error: the 'llm' directive is not supported yet "
            "(Smarter accepts it but never selects the plugin); use 'always' or 'search_terms'"
        ],
        id="llm-directive-is-not-supported",
    ),
    pytest.param(
        """\
apiVersion: smarter.sh/v1
kind: Plugin
metadata:
  name: faq
  pluginClass: sql
spec:
  selector: {directive: always}
  prompt: {systemRole: Answer from the FAQ.}
  data: {staticData: {hours: 9 to 5}}
""",
        [
            "m.yaml:5:16: metadata.pluginClass: error: kind Plugin needs pluginClass 'static' (got 'sql')",
        ],
        id="plugin-class-disagrees-with-kind",
    ),
    pytest.param(
        """\
apiVersion: smarter.sh/v1
kind: Plugin
metadata: {name: faq}
spec:
  selector: {directive: always}
  prompt: {systemRole: Answer from the FAQ.}
  data:
    staticData: {}
""",
        [
            "m.yaml:8:5: spec.data.staticData: error: staticData needs at least one key for "
            "the tool to return"
        ],
        id="static-plugin-with-empty-static-data",
    ),
    pytest.param(
        """\
apiVersion: smarter.sh/v1
kind: SqlPlugin
metadata: {name: courses}
spec:
  selector: {directive: always}
  prompt: {systemRole: List courses.}
  connection: db
  sqlData:
    sqlQuery: SELECT * FROM courses WHERE cost <= {max_cost}
""",
        [
            "m.yaml:9:15: spec.sqlData.sqlQuery: error: {max_cost} is not a declared parameter "
            "(declare it under parameters) (got 'SELECT * FROM courses WHERE cost <= {max_cost}')"
        ],
        id="sql-placeholder-not-declared",
    ),
    pytest.param(
        """\
apiVersion: smarter.sh/v1
kind: SqlPlugin
metadata: {name: courses}
spec:
  selector: {directive: always}
  prompt: {systemRole: List courses.}
  connection: db
  sqlData:
    parameters:
      - {name: topic}
      - {name: topic}
    sqlQuery: SELECT * FROM courses WHERE topic = {topic}
""",
        [
            "m.yaml:10:7: spec.sqlData.parameters: error: the parameter 'topic' is declared twice (got [{'name': 'topic'}, {'name': 'topic'}])",
        ],
        id="sql-parameter-declared-twice",
    ),
    pytest.param(
        """\
apiVersion: smarter.sh/v1
kind: SqlPlugin
metadata: {name: courses}
spec:
  selector: {directive: always}
  prompt: {systemRole: List courses.}
  connection: db
  sqlData:
    parameters:
      - name: topic
        enum: [AI, web]
        default: mobile
    sqlQuery: SELECT * FROM courses WHERE topic = {topic}
""",
        [
            "m.yaml:10:9: spec.sqlData.parameters[0]: error: the default 'mobile' is not one of the enum values",
        ],
        id="sql-parameter-default-not-in-enum",
    ),
    pytest.param(
        """\
apiVersion: smarter.sh/v1
kind: ApiPlugin
metadata: {name: seats}
spec:
  selector: {directive: always}
  prompt: {systemRole: Count seats.}
  connection: api
  apiData:
    endpoint: courses/seats
""",
        [
            "m.yaml:9:15: spec.apiData.endpoint: error: the endpoint must be a path that starts "
            "and ends with '/' (got 'courses/seats')"
        ],
        id="api-endpoint-without-leading-and-trailing-slash",
    ),
    pytest.param(
        """\
apiVersion: smarter.sh/v1
kind: ApiPlugin
metadata: {name: seats}
spec:
  selector: {directive: always}
  prompt: {systemRole: Count seats.}
  connection: api
  apiData:
    endpoint: https://evil.example/
""",
        [
            "m.yaml:9:15: spec.apiData.endpoint: error: the endpoint must be a plain path under the connection's baseUrl (got 'https://evil.example/')",
        ],
        id="api-endpoint-is-an-absolute-url",
    ),
    pytest.param(
        """\
apiVersion: smarter.sh/v1
kind: ApiPlugin
metadata: {name: seats}
spec:
  selector: {directive: always}
  prompt: {systemRole: Count seats.}
  connection: api
  apiData:
    endpoint: /https://evil.example/
""",
        [
            "m.yaml:9:15: spec.apiData.endpoint: error: the endpoint must be a plain path under "
            "the connection's baseUrl (got '/https://evil.example/')"
        ],
        id="api-endpoint-embedding-a-url",
    ),
    pytest.param(
        """\
apiVersion: smarter.sh/v1
kind: ApiPlugin
metadata: {name: seats}
spec:
  selector: {directive: always}
  prompt: {systemRole: Count seats.}
  connection: api
  apiData:
    endpoint: /courses/{code}/seats/
""",
        [
            "m.yaml:9:15: spec.apiData.endpoint: error: {code} is not a declared parameter "
            "(declare it under parameters) (got '/courses/{code}/seats/')"
        ],
        id="api-endpoint-placeholder-not-declared",
    ),
    pytest.param(
        """\
apiVersion: smarter.sh/v1
kind: ApiPlugin
metadata: {name: seats}
spec:
  selector: {directive: always}
  prompt: {systemRole: Count seats.}
  connection: api
  apiData:
    endpoint: /seats/
    method: FETCH
""",
        [
            "m.yaml:10:13: spec.apiData.method: error: Input should be 'GET', 'POST', 'PUT', "
            "'PATCH' or 'DELETE' (got 'FETCH')"
        ],
        id="api-method-unknown",
    ),
    pytest.param(
        """\
apiVersion: smarter.sh/v1
kind: ApiPlugin
metadata: {name: seats}
spec:
  selector: {directive: always}
  prompt: {systemRole: Count seats.}
  connection: api
  apiData:
    endpoint: /seats/
    headers:
      - {name: X Token, value: abc}
""",
        [
            "m.yaml:11:16: spec.apiData.headers[0].name: error: expected an HTTP header name such as X-Api-Version (got 'X Token')",
        ],
        id="api-header-name-invalid",
    ),
    # Connections
    pytest.param(
        """\
apiVersion: smarter.sh/v1
kind: SqlConnection
metadata: {name: db}
spec:
  connection:
    dbEngine: postgresql
    hostname: db.example
    database: reports
""",
        [
            "m.yaml:6:15: spec.connection.dbEngine: error: Input should be "
            "'django.db.backends.postgresql', 'django.db.backends.mysql', "
            "'django.db.backends.sqlite3', 'django.db.backends.oracle', "
            "'django.db.backends.mssql' or 'django.db.backends.sybase' (got 'postgresql')"
        ],
        id="sql-connection-unknown-db-engine",
    ),
    pytest.param(
        """\
apiVersion: smarter.sh/v1
kind: SqlConnection
metadata: {name: db}
spec:
  connection:
    dbEngine: django.db.backends.postgresql
    database: reports
""",
        ["m.yaml:5:3: spec.connection: error: django.db.backends.postgresql needs a hostname"],
        id="postgresql-connection-without-hostname",
    ),
    pytest.param(
        """\
apiVersion: smarter.sh/v1
kind: SqlConnection
metadata: {name: db}
spec:
  connection:
    dbEngine: django.db.backends.sqlite3
    database: reports.sqlite3
    port: 70000
""",
        ["m.yaml:8:11: spec.connection.port: error: Input should be less than 65536 (got 70000)"],
        id="sql-connection-port-out-of-range",
    ),
    pytest.param(
        """\
apiVersion: smarter.sh/v1
kind: ApiConnection
metadata: {name: api}
spec:
  connection:
    baseUrl: ftp://files.example/
""",
        [
            "m.yaml:6:14: spec.connection.baseUrl: error: expected an http:// or https:// URL "
            "with a host (got 'ftp://files.example/')"
        ],
        id="api-connection-base-url-not-http",
    ),
    pytest.param(
        """\
apiVersion: smarter.sh/v1
kind: ApiConnection
metadata: {name: api}
spec:
  connection:
    baseUrl: https://user:hunter2@api.example/
""",
        [
            "m.yaml:6:14: spec.connection.baseUrl: error: credentials do not belong in the URL; use the apiKey secret (got 'https://***@api.example/')",
        ],
        id="api-connection-base-url-with-credentials",
    ),
    pytest.param(
        """\
apiVersion: smarter.sh/v1
kind: ApiConnection
metadata: {name: api}
spec:
  connection:
    baseUrl: https://api.example/
    authMethod: token
""",
        [
            "m.yaml:5:3: spec.connection: error: authMethod 'token' needs an apiKey "
            "(a Secret's name)"
        ],
        id="api-connection-token-auth-without-api-key",
    ),
    # Secret
    pytest.param(
        f"""\
apiVersion: smarter.sh/v1
kind: Secret
metadata: {{name: token}}
spec:
  config:
    value: {SECRET_VALUE}
""",
        [
            "m.yaml:6:5: spec.config.value: error: plaintext secret values are refused (anyone "
            "who can read the repository can read them)"
        ],
        id="plaintext-secret-is-refused",
    ),
    pytest.param(
        """\
apiVersion: smarter.sh/v1
kind: Secret
metadata: {name: token}
spec:
  config:
    expiration_date: 2030-01-01
""",
        [
            "m.yaml:5:3: spec.config: error: a Secret needs exactly one of value, valueFrom or "
            "encryptedValue"
        ],
        id="secret-without-a-source",
    ),
    pytest.param(
        f"""\
apiVersion: smarter.sh/v1
kind: Secret
metadata: {{name: token}}
spec:
  config:
    value: {SECRET_VALUE}
    valueFrom: {{env: TOKEN}}
""",
        [
            "m.yaml:5:3: spec.config: error: a Secret needs exactly one of value, valueFrom or "
            "encryptedValue"
        ],
        id="secret-with-two-sources",
    ),
    pytest.param(
        """\
apiVersion: smarter.sh/v1
kind: Secret
metadata: {name: token}
spec:
  config:
    valueFrom: {env: TOKEN, file: /run/secrets/token}
""",
        [
            "m.yaml:6:5: spec.config.valueFrom: error: valueFrom needs exactly one of 'env' or "
            "'file'",
        ],
        id="secret-value-from-both-env-and-file",
    ),
    pytest.param(
        """\
apiVersion: smarter.sh/v1
kind: Secret
metadata: {name: token}
spec:
  config:
    valueFrom: {file: run/secrets/token}
""",
        ["m.yaml:6:5: spec.config.valueFrom: error: valueFrom.file must be an absolute path"],
        id="secret-value-from-relative-file",
    ),
    pytest.param(
        """\
apiVersion: smarter.sh/v1
kind: Secret
metadata: {name: token}
spec:
  config:
    encryptedValue: samops:v1:abc
""",
        [
            "m.yaml:6:21: spec.config.encryptedValue: error: encryptedValue must be the output of 'samops secrets encrypt' (starting with 'samops:v1:')",
        ],
        id="secret-encrypted-value-malformed",
    ),
    # Provider
    pytest.param(
        """\
apiVersion: smarter.sh/v1
kind: Provider
metadata: {name: local}
spec:
  provider:
    name: Local
""",
        ["m.yaml:5:3: spec.provider.base_url: error: the required key 'base_url' is missing"],
        id="provider-without-base-url",
    ),
    # SmarterAuthToken
    pytest.param(
        """\
apiVersion: smarter.sh/v1
kind: SmarterAuthToken
metadata: {name: bot_key}
spec:
  config:
    digest: [sha256:abc]
""",
        [
            "m.yaml:6:14: spec.config.digest[0]: error: expected sha256:<64 hex digits> or sha512:<128 hex digits> (got 'sha256:abc')",
        ],
        id="token-digest-malformed",
    ),
    pytest.param(
        f"""\
apiVersion: smarter.sh/v1
kind: SmarterAuthToken
metadata: {{name: bot_key}}
spec:
  config:
    digest:
      - {DIGEST}
      - {DIGEST}
""",
        [
            "m.yaml:7:7: spec.config.digest: error: the same digest is listed twice "
            "(got ['sha256:" + "0" * 48 + "...)"
        ],
        id="token-digest-listed-twice",
    ),
    # YAML
    pytest.param(
        """\
apiVersion: smarter.sh/v1
kind: LLMClient
metadata: {name: bot}
spec:
  config:
    defaultModel: gpt-4o
    defaultModel: gpt-4o-mini
""",
        [
            "m.yaml:7:5: spec.config.defaultModel: error: the key 'defaultModel' appears twice "
            "in this mapping (first at line 6)"
        ],
        id="duplicate-key-in-a-mapping",
    ),
    pytest.param(
        """\
apiVersion: smarter.sh/v1
kind: LLMClient
metadata:
  name: [bot
spec:
  config: {}
""",
        [
            "m.yaml:5:5: error: invalid YAML: did not find expected ',' or ']' "
            "(while parsing a flow sequence); it started at line 4"
        ],
        id="invalid-yaml-syntax",
    ),
    pytest.param(
        """\
apiVersion: smarter.sh/v1
kind: LLMClient
metadata: {name: bot}
spec:
  config:
    appName: !!python/object/apply:os.system ['true']
""",
        [
            "m.yaml:6:14: spec.config.appName: error: the YAML tag "
            "'tag:yaml.org,2002:python/object/apply:os.system' is not allowed"
        ],
        id="python-object-tag-is-refused",
    ),
    pytest.param(
        """\
apiVersion: smarter.sh/v1
kind: LLMClient
metadata:
  name: bot
  description: Note: see below
spec:
  config: {}
""",
        [
            "m.yaml:5:3: warning: the value of 'description' contains ': ', which YAML does not "
            "allow in an unquoted string; samops reads the whole value as text"
        ],
        id="unquoted-colon-is-repaired-with-warning",
    ),
]


@pytest.mark.parametrize(("text", "expected"), DOCUMENT_RULES)
def test_invalid_document_is_reported_at_its_position(text: str, expected: list[str]) -> None:
    revision = validate_text(text, check_references=False)
    assert rendered(revision.diagnostics) == expected


# --- rules across resources -----------------------------------------------------------------

REFERENCE_RULES = [
    pytest.param(
        MISSING_PLUGIN,
        ["m.yaml:6:13: spec.plugins[0]: error: no plugin 'faqs' in this revision"],
        id="missing-plugin",
    ),
    pytest.param(
        """\
apiVersion: smarter.sh/v1
kind: SqlPlugin
metadata: {name: courses}
spec:
  selector: {directive: always}
  prompt: {systemRole: List courses.}
  connection: db
  sqlData: {sqlQuery: SELECT * FROM courses}
""",
        ["m.yaml:7:15: spec.connection: error: no SqlConnection 'db' in this revision"],
        id="missing-sql-connection",
    ),
    pytest.param(
        """\
apiVersion: smarter.sh/v1
kind: LLMClient
metadata: {name: bot}
spec:
  config: {}
  plugins: [db]
---
apiVersion: smarter.sh/v1
kind: SqlConnection
metadata: {name: db}
spec:
  connection: {dbEngine: django.db.backends.sqlite3, database: db.sqlite3}
""",
        [
            "m.yaml:6:13: spec.plugins[0]: error: no plugin 'db' in this revision "
            "(there is a SqlConnection of that name)"
        ],
        id="reference-to-a-resource-of-the-wrong-kind",
    ),
    pytest.param(
        """\
apiVersion: smarter.sh/v1
kind: SqlPlugin
metadata: {name: courses}
spec:
  selector: {directive: always}
  prompt: {systemRole: List courses.}
  connection: db
  sqlData: {sqlQuery: SELECT * FROM courses}
---
apiVersion: smarter.sh/v1
kind: ApiConnection
metadata: {name: db}
spec:
  connection: {baseUrl: https://api.example/}
""",
        [
            "m.yaml:7:15: spec.connection: error: no SqlConnection 'db' in this revision (there is an ApiConnection of that name)",
        ],
        id="wrong-kind-message-uses-the-right-article",
    ),
    pytest.param(
        """\
apiVersion: smarter.sh/v1
kind: LLMClient
metadata: {name: bot}
spec:
  config:
    provider: ollama
""",
        ["m.yaml:6:15: spec.config.provider: error: no Provider 'ollama' in this revision"],
        id="missing-provider",
    ),
    pytest.param(
        """\
apiVersion: smarter.sh/v1
kind: LLMClient
metadata: {name: bot}
spec:
  config: {}
  apiKey: bot_key
""",
        ["m.yaml:6:11: spec.apiKey: error: no SmarterAuthToken 'bot_key' in this revision"],
        id="missing-auth-token",
    ),
    pytest.param(
        MISSING_SECRET,
        ["m.yaml:9:15: spec.connection.password: error: no Secret in this revision"],
        id="missing-secret-hides-the-name",
    ),
    pytest.param(
        UNKNOWN_FUNCTION,
        ["m.yaml:6:15: spec.functions[0]: error: unknown built-in function 'calculater'"],
        id="unknown-function",
    ),
    pytest.param(
        f"""\
apiVersion: smarter.sh/v1
kind: LLMClient
metadata: {{name: bot}}
spec:
  config: {{}}
  apiKey: bot_key
---
apiVersion: smarter.sh/v1
kind: SmarterAuthToken
metadata: {{name: bot_key}}
spec:
  config: {{isActive: false, digest: {DIGEST}}}
""",
        [
            "m.yaml:6:11: spec.apiKey: warning: the key 'bot_key' is not active, so this "
            "client is public"
        ],
        id="client-on-an-inactive-key-is-public",
    ),
    pytest.param(
        """\
apiVersion: smarter.sh/v1
kind: LLMClient
metadata: {name: bot}
spec:
  config: {}
  apiKey: bot_key
---
apiVersion: smarter.sh/v1
kind: SmarterAuthToken
metadata: {name: bot_key}
spec:
  config: {isActive: true}
""",
        [
            "m.yaml:6:11: spec.apiKey: error: the key 'bot_key' is active but has no digest, "
            "so no request could ever use this client"
        ],
        id="client-on-an-active-key-without-digest",
    ),
]


@pytest.mark.parametrize(("text", "expected"), REFERENCE_RULES)
def test_reference_problem_is_reported_at_the_reference(text: str, expected: list[str]) -> None:
    revision = validate_text(text)
    assert rendered(revision.diagnostics) == expected


# --- edges that must stay valid -------------------------------------------------------------

ACCEPTED = [
    pytest.param(
        """\
apiVersion: smarter.sh/v0
kind: LLMClient
metadata: {name: bot}
spec:
  config: {}
""",
        id="api-version-v0",
    ),
    pytest.param(
        """\
apiVersion: smarter.sh/v1
kind: LLMClient
metadata: {name: bot}
spec:
  config: {provider: openai}
  functions: [weather, datemath]
""",
        id="builtin-openai-provider-and-function-aliases",
    ),
    pytest.param(
        """\
apiVersion: smarter.sh/v1
kind: SqlPlugin
metadata: {name: courses}
spec:
  selector: {directive: always}
  prompt: {systemRole: List courses.}
  connection: db
  sqlData: {sqlQuery: SELECT * FROM courses, limit: 1000}
---
apiVersion: smarter.sh/v1
kind: SqlConnection
metadata: {name: db}
spec:
  connection: {dbEngine: django.db.backends.sqlite3, database: db.sqlite3}
""",
        id="sql-limit-1000",
    ),
    pytest.param(
        """\
apiVersion: smarter.sh/v1
kind: ApiPlugin
metadata: {name: seats}
spec:
  selector: {directive: always}
  prompt: {systemRole: Count seats.}
  connection: api
  apiData: {endpoint: /seats/, method: post}
---
apiVersion: smarter.sh/v1
kind: ApiConnection
metadata: {name: api}
spec:
  connection: {baseUrl: https://api.example/}
""",
        id="lowercase-api-method",
    ),
    pytest.param(
        f"""\
apiVersion: smarter.sh/v1
kind: SmarterAuthToken
metadata: {{name: bot_key}}
spec:
  config: {{isActive: true, digest: {DIGEST}}}
""",
        id="single-digest-string",
    ),
]


@pytest.mark.parametrize("text", ACCEPTED)
def test_edge_case_is_accepted(text: str) -> None:
    revision = validate_text(text)
    assert rendered(revision.diagnostics) == []
    assert revision.resources
    assert not any(resource.partial for resource in revision.resources)


# --- identities across files ----------------------------------------------------------------

STATIC_PLUGIN = """\
apiVersion: smarter.sh/v1
kind: Plugin
metadata: {name: faq}
spec:
  selector: {directive: always}
  prompt: {systemRole: Answer from the FAQ.}
  data: {staticData: {hours: 9 to 5}}
"""
SQL_PLUGIN = """\
apiVersion: smarter.sh/v1
kind: SqlPlugin
metadata: {name: faq}
spec:
  selector: {directive: always}
  prompt: {systemRole: Answer from the FAQ table.}
  connection: db
  sqlData: {sqlQuery: SELECT answer FROM faq}
"""
SQL_CONNECTION = """\
apiVersion: smarter.sh/v1
kind: SqlConnection
metadata: {name: db}
spec:
  connection: {dbEngine: django.db.backends.sqlite3, database: db.sqlite3}
"""
API_CONNECTION = """\
apiVersion: smarter.sh/v1
kind: ApiConnection
metadata: {name: db}
spec:
  connection: {baseUrl: https://api.example/}
"""


def source_file(path: str, text: str) -> SourceFile:
    data = text.encode()
    return SourceFile(path, blob_sha(data), data)


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        pytest.param(
            {"a/faq.yaml": STATIC_PLUGIN, "b/faq.yaml": STATIC_PLUGIN},
            ["b/faq.yaml:3:18: metadata.name: error: Plugin 'faq' is also defined at a/faq.yaml:1"],
            id="same-kind-and-name-in-two-files",
        ),
        pytest.param(
            {"faq.yaml": STATIC_PLUGIN, "sql.yaml": SQL_PLUGIN + "---\n" + SQL_CONNECTION},
            [
                "sql.yaml:3:18: metadata.name: error: SqlPlugin 'faq' is also defined at "
                "faq.yaml:1 (as a Plugin; plugin kinds share names)"
            ],
            id="plugin-kinds-share-names",
        ),
        pytest.param(
            {"api.yaml": API_CONNECTION, "db.yaml": SQL_CONNECTION},
            [],
            id="connection-kinds-do-not-share-names",
        ),
    ],
)
def test_duplicate_identity_across_files_is_reported(
    files: dict[str, str], expected: list[str]
) -> None:
    revision = validate_files("test", [source_file(path, text) for path, text in files.items()])
    assert rendered(revision.diagnostics) == expected


# --- hints ----------------------------------------------------------------------------------

CLIENT_CONFIG = """\
apiVersion: smarter.sh/v1
kind: LLMClient
metadata: {{name: bot}}
spec:
  config: {config}
"""


@pytest.mark.parametrize(
    ("text", "hint"),
    [
        pytest.param(UNKNOWN_KEY, "did you mean 'defaultTemperature'?", id="unknown-key"),
        pytest.param(
            CREDENTIAL_IN_TOKEN,
            "API keys never go in git: 'samops keys create NAME' prints the key once and a "
            "manifest holding only spec.config.digest",
            id="credential-key-in-token",
        ),
        pytest.param(UNKNOWN_KIND, f"did you mean 'LLMClient'? {KINDS_HINT}", id="unknown-kind"),
        pytest.param(
            UNKNOWN_KIND.replace("LLMClinet", "SQLPlugin"),
            f"did you mean 'SqlPlugin'? {KINDS_HINT}",
            id="kind-in-the-wrong-case",
        ),
        pytest.param(MISSING_PLUGIN, "did you mean 'faq'?", id="missing-plugin"),
        pytest.param(
            UNKNOWN_FUNCTION,
            "did you mean 'calculator'? known functions: calculator, date_calculator, "
            "get_current_weather, weather, datemath",
            id="unknown-function",
        ),
        pytest.param(
            MISSING_SECRET,
            "add a Secret manifest with this name, or fix the reference (the value is not "
            "shown: it may be a pasted credential)",
            id="missing-secret",
        ),
        pytest.param(
            CLIENT_CONFIG.format(config="{defaultTemperature: 3}"),
            "write a number of at most 1.0",
            id="number-above-its-bound",
        ),
        pytest.param(
            CLIENT_CONFIG.format(config="{defaultMaxTokens: 0}"),
            "write a number above 0",
            id="number-below-its-bound",
        ),
        pytest.param(
            CLIENT_CONFIG.format(config="{deployed: maybe}"),
            "write true or false, without quotes",
            id="not-a-boolean",
        ),
        pytest.param(
            CLIENT_CONFIG.format(config="{defaultMaxTokens: many}"),
            "write a whole number, without quotes",
            id="not-a-number",
        ),
        pytest.param(
            CLIENT_CONFIG.format(config="[gpt-4o]"),
            "write a mapping: one 'key: value' per line, indented below this key",
            id="not-a-mapping",
        ),
    ],
)
def test_hint_says_what_to_write_instead(text: str, hint: str) -> None:
    revision = validate_text(text)
    assert [d.hint for d in revision.diagnostics] == [hint]


# --- behaviour beyond the message -----------------------------------------------------------


@pytest.mark.parametrize(
    ("metadata", "description"),
    [
        pytest.param("{name: faq}", "Opening hours.", id="metadata-without-description"),
        pytest.param(
            "{name: faq, description: Our hours.}", "Our hours.", id="metadata-description-wins"
        ),
    ],
)
def test_ignored_data_description_is_the_fallback_description(
    metadata: str, description: str
) -> None:
    revision = validate_text(
        f"""\
apiVersion: smarter.sh/v1
kind: Plugin
metadata: {metadata}
spec:
  selector: {{directive: always}}
  prompt: {{systemRole: Answer from the FAQ.}}
  data:
    description: Opening hours.
    staticData: {{hours: 9 to 5}}
""",
        check_references=False,
    )
    assert revision.resources[0].model.metadata.description == description


def test_sql_limit_over_the_maximum_is_capped_with_a_warning() -> None:
    revision = validate_text(
        """\
apiVersion: smarter.sh/v1
kind: SqlPlugin
metadata: {name: courses}
spec:
  selector: {directive: always}
  prompt: {systemRole: List courses.}
  connection: db
  sqlData:
    sqlQuery: SELECT * FROM courses
    limit: 5000
""",
        check_references=False,
    )
    assert revision.valid
    assert rendered(revision.diagnostics) == [
        "m.yaml:10:5: spec.sqlData.limit: warning: 5,000 is over the maximum of 1,000: 1,000 "
        "is used (as Smarter does)"
    ]
    assert revision.diagnostics[0].hint == "write 1000 or less to silence this warning"
    plugin = revision.resources[0].model
    assert isinstance(plugin, SqlPlugin)
    assert plugin.spec.sql_data.limit == 1000


def test_unquoted_colon_value_is_read_whole() -> None:
    revision = validate_text(
        """\
apiVersion: smarter.sh/v1
kind: LLMClient
metadata:
  name: bot
  description: Note: see below
spec:
  config: {}
"""
    )
    assert [d.code for d in revision.diagnostics] == ["yaml-unquoted-colon"]
    assert revision.resources[0].model.metadata.description == "Note: see below"


def test_plaintext_secret_allowed_by_option_is_a_warning() -> None:
    revision = validate_text(
        f"""\
apiVersion: smarter.sh/v1
kind: Secret
metadata: {{name: token}}
spec:
  config:
    value: {SECRET_VALUE}
""",
        allow_plaintext_secrets=True,
    )
    assert rendered(revision.diagnostics) == [
        "m.yaml:6:5: spec.config.value: warning: this Secret holds its value in plaintext in "
        "git (allowed by --allow-plaintext-secrets)"
    ]


def everything_shown(diagnostics: list[Diagnostic]) -> str:
    """Every text a user could see: rendered lines with hints, and the JSON shape."""
    return "\n".join(
        [d.render() for d in diagnostics] + [json.dumps(d.to_json()) for d in diagnostics]
    )


def secret_config(config: str) -> str:
    return f"""\
apiVersion: smarter.sh/v1
kind: Secret
metadata: {{name: token}}
spec:
  config:
{textwrap.indent(config, "    ")}
"""


@pytest.mark.parametrize(
    ("text", "allow_plaintext"),
    [
        pytest.param(secret_config(f"value: {SECRET_VALUE}"), False, id="plaintext-refused"),
        pytest.param(secret_config(f"value: {SECRET_VALUE}"), True, id="plaintext-allowed"),
        pytest.param(
            secret_config(f"value: {SECRET_VALUE}\nvalueFrom: {{env: TOKEN}}"),
            False,
            id="two-sources",
        ),
        pytest.param(secret_config(f"value: [{SECRET_VALUE}]"), False, id="value-not-text"),
        pytest.param(secret_config(f"valu: {SECRET_VALUE}"), False, id="misspelt-key"),
        pytest.param(
            secret_config(f"value: {SECRET_VALUE}\nvalue: {SECRET_VALUE}"),
            False,
            id="duplicate-key",
        ),
        pytest.param(
            secret_config(f"value: user: {SECRET_VALUE}"), False, id="unquoted-colon-repair"
        ),
        pytest.param(
            secret_config(f"value: !!int {SECRET_VALUE}"),
            False,
            id="unreadable-tagged-value",
        ),
        pytest.param(MISSING_SECRET, False, id="missing-secret-reference"),
        pytest.param(
            MISSING_SECRET.replace(PASTED_CREDENTIAL, SECRET_VALUE),
            False,
            id="secret-reference-normalised",
        ),
    ],
)
def test_secret_material_is_never_echoed(text: str, allow_plaintext: bool) -> None:
    revision = validate_text(text, allow_plaintext_secrets=allow_plaintext)
    shown = everything_shown(revision.diagnostics)
    assert revision.diagnostics
    assert SECRET_VALUE not in shown
    assert PASTED_CREDENTIAL not in shown


@pytest.mark.parametrize(
    "tagged",
    [
        pytest.param("!!timestamp soon", id="timestamp"),
        pytest.param("!!bool maybe", id="bool"),
    ],
)
def test_explicit_tag_with_unreadable_value_is_reported_not_raised(tagged: str) -> None:
    revision = validate_text(
        f"""\
apiVersion: smarter.sh/v1
kind: LLMClient
metadata: {{name: bot}}
spec:
  config:
    appName: {tagged}
"""
    )
    assert [(d.code, d.location(), d.path) for d in revision.diagnostics] == [
        ("yaml-value", "m.yaml:6:14", "spec.config.appName")
    ]
