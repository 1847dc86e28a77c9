"""The nine SAM kinds as pydantic models, with every field, default and rule of ``SAM.md``.

Part of Load/Validate. Each class is one kind's whole document; rules that need only the
document itself live here as validators, rules that need the whole revision live in
``references.py``. Field descriptions double as the JSON Schema that ``samops schema`` prints.
"""

from __future__ import annotations

import base64
import re
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BeforeValidator, Field, ValidationInfo, field_validator, model_validator
from pydantic.json_schema import SkipJsonSchema

from reconciler.sam.base import (
    Capped,
    EmptyIfNull,
    HttpUrl,
    Metadata,
    OptionalText,
    Reference,
    SamModel,
    SecretReference,
    Sensitive,
    SnakeModel,
    StringOrList,
    Text,
    UtcDateTime,
)

CANONICAL_CONTEXT = "samops_canonical"
"""Validation context key: the data is samops' canonical form (a stored row), not a manifest."""


def canonical(info: ValidationInfo) -> bool:
    return bool(info.context and info.context.get(CANONICAL_CONTEXT))


PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
PARAMETER_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"
DIGEST_PATTERN = r"^(sha256:[0-9a-f]{64}|sha512:[0-9a-f]{128})$"
ENV_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"
HEADER_NAME_PATTERN = r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$"
ENCRYPTED_PREFIX = "samops:v1:"
SQL_LIMIT_MAX = 1000
Temperature = Annotated[float, Field(ge=0.0, le=1.0)]
PositiveInt = Annotated[int, Field(gt=0)]


class Document(SamModel):
    """Fields every kind shares. ``KIND`` is the value of ``kind:``; ``NAMESPACE`` groups kinds
    whose names must not collide (the three plugin kinds share one)."""

    KIND: ClassVar[str]
    NAMESPACE: ClassVar[str]

    api_version: Literal["smarter.sh/v1", "smarter.sh/v0"] = Field(
        description="smarter.sh/v1 (v0 is read as v1)."
    )
    kind: str
    metadata: Metadata

    @field_validator("kind")
    @classmethod
    def _kind_matches(cls, value: str) -> str:
        if value != cls.KIND:
            raise ValueError(f"expected {cls.KIND!r}")
        return value

    @property
    def name(self) -> str:
        return self.metadata.name


# --- LLMClient ------------------------------------------------------------------------------


class CustomDomain(SnakeModel):
    domain_name: str
    aws_hosted_zone_id: str | None = None


class LLMClientConfig(SamModel):
    provider: Reference = Field(default="openai", description="A Provider's name.")
    default_model: str = "gpt-4o-mini"
    default_system_role: OptionalText = None
    default_temperature: Temperature = 0.5
    default_max_tokens: PositiveInt = 2048
    deployed: bool = False
    subdomain: OptionalText = None
    custom_domain: CustomDomain | None = None
    app_name: OptionalText = None
    app_assistant: OptionalText = None
    app_welcome_message: OptionalText = None
    app_example_prompts: Annotated[list[Text], EmptyIfNull] = []
    app_placeholder: OptionalText = None
    app_info_url: OptionalText = None
    app_background_image_url: OptionalText = None
    app_logo_url: OptionalText = None
    app_file_attachment: bool = False


class LLMClientSpec(SamModel):
    config: LLMClientConfig
    plugins: Annotated[list[Reference], EmptyIfNull] = Field(
        default=[], description="Names of plugins of any of the three plugin kinds."
    )
    functions: Annotated[list[str], EmptyIfNull] = Field(
        default=[],
        description="Built-in functions: calculator, date_calculator, get_current_weather.",
    )
    api_key: Reference | None = Field(
        default=None, description="A SmarterAuthToken; when active, requests must present it."
    )


class LLMClient(Document):
    KIND = "LLMClient"
    NAMESPACE = "LLMClient"
    spec: LLMClientSpec


# --- Plugins --------------------------------------------------------------------------------


class Selector(SamModel):
    directive: Literal["always", "search_terms", "llm"]
    search_terms: Annotated[list[Text], EmptyIfNull] = []

    @model_validator(mode="after")
    def _rules(self) -> Selector:
        if self.directive == "llm":
            raise ValueError(
                "the 'llm' directive is not supported yet (Smarter accepts it but never selects "
                "the plugin); use 'always' or 'search_terms'"
            )
        if self.directive == "search_terms" and not self.search_terms:
            raise ValueError("the 'search_terms' directive needs a non-empty searchTerms list")
        return self


class Prompt(SamModel):
    provider: Reference = "openai"
    system_role: str = Field(description="Appended to the client's system prompt when selected.")
    model: str | None = None
    temperature: Temperature | None = None
    max_tokens: PositiveInt | None = None


class Parameter(SamModel):
    name: str = Field(pattern=PARAMETER_NAME)
    type: Literal["string", "number", "integer", "boolean", "object", "array", "null"] = "string"
    description: OptionalText = None
    required: bool = False
    enum: list[Any] | None = None
    default: Any = None

    @model_validator(mode="after")
    def _default_in_enum(self) -> Parameter:
        if self.enum and self.default is not None and self.default not in self.enum:
            raise ValueError(f"the default {self.default!r} is not one of the enum values")
        return self


class TestValue(SamModel):
    __test__ = False  # not a pytest class
    name: str
    value: Any = None


def _check_parameters(parameters: list[Parameter]) -> list[Parameter]:
    seen: set[str] = set()
    for parameter in parameters:
        if parameter.name in seen:
            raise ValueError(f"the parameter {parameter.name!r} is declared twice")
        seen.add(parameter.name)
    return parameters


def _check_placeholders(template: str, info: ValidationInfo) -> str:
    """Every ``{name}`` in ``template`` must be a parameter declared before it (fields are
    validated in order, so ``parameters`` comes first in the models that use this)."""
    if "parameters" not in info.data:
        return template  # the parameters are invalid; that error is reported already
    declared = {p.name for p in info.data["parameters"]}
    missing = sorted({m for m in PLACEHOLDER.findall(template) if m not in declared})
    if missing:
        names = ", ".join(f"{{{m}}}" for m in missing)
        verb = "is not a declared parameter" if len(missing) == 1 else "are not declared"
        raise ValueError(f"{names} {verb} (declare it under parameters)")
    return template


class PluginSpecBase(SamModel):
    selector: Selector
    prompt: Prompt


class PluginMetadata(Metadata):
    """Plugin metadata; each plugin kind narrows it to check ``pluginClass`` against the kind."""

    KIND: ClassVar[str] = ""
    PLUGIN_CLASS: ClassVar[str] = ""
    plugin_class: Literal["static", "sql", "api"] | None = None

    @field_validator("plugin_class")
    @classmethod
    def _matches_kind(cls, value: str | None) -> str | None:
        if value is not None and cls.PLUGIN_CLASS and value != cls.PLUGIN_CLASS:
            raise ValueError(f"kind {cls.KIND} needs pluginClass {cls.PLUGIN_CLASS!r}")
        return value


class StaticPluginMetadata(PluginMetadata):
    KIND, PLUGIN_CLASS = "Plugin", "static"


class SqlPluginMetadata(PluginMetadata):
    KIND, PLUGIN_CLASS = "SqlPlugin", "sql"


class ApiPluginMetadata(PluginMetadata):
    KIND, PLUGIN_CLASS = "ApiPlugin", "api"


class PluginDocument(Document):
    NAMESPACE = "Plugin"
    PLUGIN_CLASS: ClassVar[str]
    metadata: PluginMetadata
    spec: PluginSpecBase


class StaticData(SamModel):
    static_data: dict[str, Any] = Field(description="Top-level keys become the tool's choices.")

    @field_validator("static_data")
    @classmethod
    def _not_empty(cls, value: dict[str, Any]) -> dict[str, Any]:
        if not value:
            raise ValueError("staticData needs at least one key for the tool to return")
        return value


class StaticPluginSpec(PluginSpecBase):
    data: StaticData


class Plugin(PluginDocument):
    KIND = "Plugin"
    PLUGIN_CLASS = "static"
    metadata: StaticPluginMetadata
    spec: StaticPluginSpec


class SqlData(SamModel):
    parameters: Annotated[list[Parameter], EmptyIfNull] = []
    sql_query: str = Field(description="SQL with {param} placeholders, bound by the driver.")
    test_values: Annotated[list[TestValue], EmptyIfNull] = []
    limit: Annotated[int, Field(gt=0), Capped(SQL_LIMIT_MAX)] = 100

    _unique_parameters = field_validator("parameters")(_check_parameters)
    _placeholders_declared = field_validator("sql_query")(_check_placeholders)


class SqlPluginSpec(PluginSpecBase):
    connection: Reference
    sql_data: SqlData


class SqlPlugin(PluginDocument):
    KIND = "SqlPlugin"
    PLUGIN_CLASS = "sql"
    metadata: SqlPluginMetadata
    spec: SqlPluginSpec


class UrlParam(SamModel):
    key: str
    value: Text | None = None


class Header(SamModel):
    name: str = Field(pattern=HEADER_NAME_PATTERN)
    value: Text | None = None


def _upper(value: Any) -> Any:
    return value.upper() if isinstance(value, str) else value


class ApiData(SamModel):
    parameters: Annotated[list[Parameter], EmptyIfNull] = []
    endpoint: str = Field(description="Path under the connection's baseUrl, e.g. /items/{id}/.")
    method: Annotated[Literal["GET", "POST", "PUT", "PATCH", "DELETE"], BeforeValidator(_upper)] = (
        "GET"
    )
    url_params: Annotated[list[UrlParam], EmptyIfNull] = []
    headers: Annotated[list[Header], EmptyIfNull] = []
    body: Any = None
    test_values: Annotated[list[TestValue], EmptyIfNull] = []
    limit: PositiveInt = 100

    _unique_parameters = field_validator("parameters")(_check_parameters)

    @field_validator("endpoint")
    @classmethod
    def _relative_path(cls, value: str, info: ValidationInfo) -> str:
        if "://" in value or "/../" in value or "/./" in value or "\\" in value or "?" in value:
            raise ValueError("the endpoint must be a plain path under the connection's baseUrl")
        if not (value.startswith("/") and value.endswith("/")) or value.startswith("//"):
            raise ValueError("the endpoint must be a path that starts and ends with '/'")
        return _check_placeholders(value, info)


class ApiPluginSpec(PluginSpecBase):
    connection: Reference
    api_data: ApiData


class ApiPlugin(PluginDocument):
    KIND = "ApiPlugin"
    PLUGIN_CLASS = "api"
    metadata: ApiPluginMetadata
    spec: ApiPluginSpec


# --- Connections ----------------------------------------------------------------------------

DB_ENGINES = (
    "django.db.backends.postgresql",
    "django.db.backends.mysql",
    "django.db.backends.sqlite3",
    "django.db.backends.oracle",
    "django.db.backends.mssql",
    "django.db.backends.sybase",
)


class SqlConnectionConfig(SamModel):
    db_engine: Literal[DB_ENGINES]  # type: ignore[valid-type]
    hostname: OptionalText = None
    port: Annotated[int, Field(gt=0, lt=65536)] | None = None
    database: str = Field(description="Database name; for sqlite3 the file's path.")
    username: OptionalText = None
    password: SecretReference | None = None
    timeout: PositiveInt = Field(default=30, description="Seconds.")
    use_ssl: bool = False
    ssl_cert: OptionalText = None
    ssl_key: OptionalText = None
    ssl_ca: OptionalText = None
    proxy_host: OptionalText = None
    proxy_port: Annotated[int, Field(gt=0, lt=65536)] | None = None
    proxy_username: OptionalText = None
    proxy_password: SecretReference | None = None
    ssh_known_hosts: OptionalText = None
    pool_size: PositiveInt = 5
    max_overflow: Annotated[int, Field(ge=0)] = 10
    authentication_method: Literal["none", "tcpip", "tcpip_ssh", "ldap_user_pwd"] = "none"

    @model_validator(mode="after")
    def _host_for_servers(self) -> SqlConnectionConfig:
        if self.db_engine != "django.db.backends.sqlite3" and not self.hostname:
            raise ValueError(f"{self.db_engine} needs a hostname")
        return self


class SqlConnectionSpec(SamModel):
    connection: SqlConnectionConfig


class SqlConnection(Document):
    KIND = "SqlConnection"
    NAMESPACE = "SqlConnection"
    spec: SqlConnectionSpec


class ApiConnectionConfig(SamModel):
    base_url: HttpUrl
    api_key: SecretReference | None = None
    auth_method: Literal["none", "basic", "token", "oauth"] = "none"
    timeout: PositiveInt = Field(default=30, description="Seconds.")
    proxy_protocol: Literal["http", "https", "socks", "socks4", "socks5"] | None = None
    proxy_host: OptionalText = None
    proxy_port: Annotated[int, Field(gt=0, lt=65536)] | None = None
    proxy_username: OptionalText = None
    proxy_password: SecretReference | None = None

    @model_validator(mode="after")
    def _key_for_auth(self) -> ApiConnectionConfig:
        if self.auth_method != "none" and self.api_key is None:
            raise ValueError(f"authMethod {self.auth_method!r} needs an apiKey (a Secret's name)")
        return self


class ApiConnectionSpec(SamModel):
    connection: ApiConnectionConfig


class ApiConnection(Document):
    KIND = "ApiConnection"
    NAMESPACE = "ApiConnection"
    spec: ApiConnectionSpec


# --- Secret ---------------------------------------------------------------------------------


class ValueFrom(SamModel):
    env: str | None = Field(default=None, pattern=ENV_NAME_PATTERN)
    file: str | None = Field(default=None, description="Absolute path on the serving host.")

    @model_validator(mode="after")
    def _exactly_one(self) -> ValueFrom:
        if (self.env is None) == (self.file is None):
            raise ValueError("valueFrom needs exactly one of 'env' or 'file'")
        if self.file is not None and not self.file.startswith("/"):
            raise ValueError("valueFrom.file must be an absolute path")
        return self


def _check_ciphertext(value: str) -> str:
    body = value.removeprefix(ENCRYPTED_PREFIX)
    try:
        raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
    except ValueError:
        raw = b""
    if not value.startswith(ENCRYPTED_PREFIX) or len(raw) < 32 + 12 + 16:
        raise ValueError(
            f"encryptedValue must be the output of 'samops secrets encrypt' "
            f"(starting with {ENCRYPTED_PREFIX!r})"
        )
    return value


class SecretConfig(SamModel):
    value: Annotated[Text | None, Sensitive()] = Field(
        default=None, description="Plaintext; refused unless the daemon allows plaintext."
    )
    value_from: ValueFrom | None = None
    encrypted_value: str | None = None
    expiration_date: UtcDateTime | None = Field(
        default=None, alias="expiration_date", description="Optional expiry date."
    )
    value_fingerprint: SkipJsonSchema[str | None] = Field(
        default=None,
        description="In samops' canonical form only (never in a manifest): the keyed digest "
        "that stands for a plaintext value (reconciler/desired.py).",
    )

    @field_validator("encrypted_value")
    @classmethod
    def _ciphertext(cls, value: str | None) -> str | None:
        return None if value is None else _check_ciphertext(value)

    @model_validator(mode="after")
    def _exactly_one_source(self, info: ValidationInfo) -> SecretConfig:
        if self.value_fingerprint is not None and not canonical(info):
            raise ValueError(
                "valueFingerprint is written by samops, not in manifests: give value, "
                "valueFrom or encryptedValue"
            )
        given = [
            self.value is not None or self.value_fingerprint is not None,
            self.value_from is not None,
            self.encrypted_value is not None,
        ]
        if sum(given) != 1:
            raise ValueError("a Secret needs exactly one of value, valueFrom or encryptedValue")
        return self


class SecretSpec(SamModel):
    config: SecretConfig


class Secret(Document):
    KIND = "Secret"
    NAMESPACE = "Secret"
    spec: SecretSpec


# --- Provider -------------------------------------------------------------------------------


class ProviderConfig(SnakeModel):
    name: OptionalText = Field(default=None, description="Display name.")
    base_url: HttpUrl = Field(description="An OpenAI-compatible endpoint, e.g. .../v1.")
    api_key: SecretReference | None = None
    default_model: OptionalText = None
    connectivity_test_path: OptionalText = None
    description: OptionalText = None
    website_url: OptionalText = None
    docs_url: OptionalText = None
    logo_url: OptionalText = None
    terms_of_use_url: OptionalText = None
    privacy_policy_url: OptionalText = None
    contact_email: OptionalText = None
    support_email: OptionalText = None


class ProviderSpec(SamModel):
    provider: ProviderConfig


class Provider(Document):
    KIND = "Provider"
    NAMESPACE = "Provider"
    spec: ProviderSpec


# --- SmarterAuthToken -----------------------------------------------------------------------


class TokenConfig(SamModel):
    is_active: bool = False
    username: OptionalText = None
    digest: Annotated[list[Annotated[str, Field(pattern=DIGEST_PATTERN)]], StringOrList] = Field(
        default=[],
        description="sha256:<hex> or sha512:<hex> of the key; several allow rotation.",
    )
    expires_at: UtcDateTime | None = None

    @field_validator("digest")
    @classmethod
    def _unique(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError("the same digest is listed twice")
        return value


class TokenSpec(SamModel):
    config: TokenConfig


class SmarterAuthToken(Document):
    KIND = "SmarterAuthToken"
    NAMESPACE = "SmarterAuthToken"
    spec: TokenSpec


KINDS: dict[str, type[Document]] = {
    cls.KIND: cls
    for cls in (
        LLMClient,
        Plugin,
        SqlPlugin,
        ApiPlugin,
        SqlConnection,
        ApiConnection,
        Secret,
        Provider,
        SmarterAuthToken,
    )
}
"""Every kind by its ``kind:`` value."""
