"""The three plugin kinds (Plugin, SqlPlugin, ApiPlugin) as pydantic models.

Part of Load/Validate, beside ``kinds.py`` (which lists every kind in ``KINDS``). The three
share a selector, a prompt and one namespace of names; each carries its data: static data, a
SQL query with declared parameters, or an HTTP request under a connection's base URL.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

from pydantic import BeforeValidator, Field, ValidationInfo, field_validator, model_validator

from reconciler.sam.base import (
    Capped,
    EmptyIfNull,
    Metadata,
    OptionalText,
    Reference,
    SamModel,
    Text,
)
from reconciler.sam.document import (
    HEADER_NAME_PATTERN,
    PARAMETER_NAME,
    PLACEHOLDER,
    SQL_LIMIT_MAX,
    Document,
    PositiveInt,
    Temperature,
)

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
