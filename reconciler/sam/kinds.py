"""The SAM kinds samops manages, as pydantic models with every field, default and rule of
``SAM.md``.

The plugin kinds are in ``plugin_kinds.py``, Budget in ``budget_kind.py`` and the envelope
they all share in ``document.py``; this module has the others and ``KINDS``, the registry of
all ten.

Part of Load/Validate. Each class is one kind's whole document; rules that need only the
document itself live here as validators, rules that need the whole revision live in
``references.py``. Field descriptions double as the JSON Schema that ``samops schema`` prints.
"""

from __future__ import annotations

import base64
from typing import Annotated, Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator
from pydantic.alias_generators import to_camel
from pydantic.json_schema import SkipJsonSchema

from reconciler.sam.base import (
    EmptyIfNull,
    HttpUrl,
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
from reconciler.sam.budget_kind import Budget
from reconciler.sam.client_format import (
    PROMPT_ATTRIBUTES,
    STYLED_ATTRIBUTES,
    CustomDomain,
    LLMClientPrompt,
    LLMClientStyles,
    ManifestFormat,
)
from reconciler.sam.document import (
    CANONICAL_CONTEXT,
    DIGEST_PATTERN,
    ENCRYPTED_PREFIX,
    ENV_NAME_PATTERN,
    HEADER_NAME_PATTERN,
    PARAMETER_NAME,
    PLACEHOLDER,
    SQL_LIMIT_MAX,
    Document,
    PositiveInt,
    Temperature,
    canonical,
)
from reconciler.sam.plugin_kinds import (
    ApiData,
    ApiPlugin,
    Header,
    Parameter,
    Plugin,
    PluginDocument,
    Prompt,
    Selector,
    SqlData,
    SqlPlugin,
    StaticData,
    TestValue,
    UrlParam,
)

__all__ = [
    "CANONICAL_CONTEXT",
    "DIGEST_PATTERN",
    "ENCRYPTED_PREFIX",
    "ENV_NAME_PATTERN",
    "HEADER_NAME_PATTERN",
    "KINDS",
    "PARAMETER_NAME",
    "PLACEHOLDER",
    "SQL_LIMIT_MAX",
    "ApiConnection",
    "ApiConnectionConfig",
    "ApiData",
    "ApiPlugin",
    "Budget",
    "Document",
    "Header",
    "LLMClient",
    "Parameter",
    "Plugin",
    "PluginDocument",
    "Prompt",
    "Provider",
    "ProviderConfig",
    "Secret",
    "SecretConfig",
    "Selector",
    "SmarterAuthToken",
    "SqlConnection",
    "SqlConnectionConfig",
    "SqlData",
    "SqlPlugin",
    "StaticData",
    "TestValue",
    "UrlParam",
    "canonical",
]

# --- LLMClient ------------------------------------------------------------------------------


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
    allowed_origins: Annotated[list[Text], EmptyIfNull] = Field(
        default=[], description="Browser origins that may call the client's chat routes."
    )
    prompt: LLMClientPrompt | None = Field(
        default=None, description="Smarter's current format: the settings above, nested."
    )
    styles: LLMClientStyles | None = Field(
        default=None, description="Smarter's current format: the chat UI's look (kept)."
    )

    @model_validator(mode="after")
    def _one_generation(self, info: ValidationInfo) -> LLMClientConfig:
        if canonical(info):  # samops' own form keeps the flat settings beside the styles
            return self
        flat = self.model_fields_set & set(PROMPT_ATTRIBUTES)
        if self.prompt is not None and flat:
            raise ValueError(
                "write the client's settings either under spec.config.prompt (Smarter's current "
                "format) or directly under spec.config (0.14), not both: "
                + ", ".join(sorted(to_camel(a) for a in flat))
                + " found directly"
            )
        styled = self.model_fields_set & set(STYLED_ATTRIBUTES)
        if self.styles is not None and styled:
            raise ValueError(
                "with spec.config.styles, the background image and logo URLs go in styles"
            )
        return self


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
    extensions: Annotated[list[str], EmptyIfNull] = Field(
        default=[], description="Smarter's current name of functions (give one of the two)."
    )
    manifest_format: SkipJsonSchema[ManifestFormat | None] = Field(
        default=None,
        description="In samops' canonical form only: the file used the current format.",
    )

    @model_validator(mode="after")
    def _one_name_for_functions(self, info: ValidationInfo) -> LLMClientSpec:
        if self.manifest_format is not None and not canonical(info):
            raise ValueError("manifestFormat is written by samops, not in manifests")
        if self.extensions and self.functions:
            raise ValueError(
                "give the built-in functions as spec.extensions (Smarter's current name) or "
                "spec.functions (0.14), not both"
            )
        return self


class LLMClient(Document):
    KIND = "LLMClient"
    spec: LLMClientSpec


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
    logo: OptionalText = Field(default=None, description="Smarter's current name of logo_url.")
    terms_of_service_url: OptionalText = Field(
        default=None, description="Smarter's current name of terms_of_use_url."
    )


class ProviderSpec(SamModel):
    provider: ProviderConfig


class Provider(Document):
    KIND = "Provider"
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
        Budget,
    )
}
"""Every kind by its ``kind:`` value."""
