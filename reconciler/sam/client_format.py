"""The two generations of the LLMClient format, and the one canonical form between them.

Part of the format. Smarter 0.14 writes a client's settings directly under ``spec.config`` and
its built-in functions as ``spec.functions``; Smarter's current schema (the one its SDK's
models are generated from) moves them under ``spec.config.prompt``, adds ``spec.config.styles``
(the chat UI's look, with the background image and logo URLs) and calls the functions
``spec.extensions``. samops validates either as written (errors point into the file as it is
shaped), then makes one canonical form of both (``canonical_client``): the settings flat, the
functions as ``functions``, the styles kept, and ``manifestFormat: current`` to remember the
shape, so ``describe`` writes a client back in the shape its file used (``written_shape``).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field
from pydantic.alias_generators import to_camel

from reconciler.sam.base import EmptyIfNull, OptionalText, Reference, SamModel, SnakeModel, Text
from reconciler.sam.document import PositiveInt, Temperature


class CustomDomain(SnakeModel):
    domain_name: str
    aws_hosted_zone_id: str | None = None


class LLMClientPrompt(SamModel):
    """``spec.config.prompt`` of the current format: the settings 0.14 wrote in ``config``."""

    provider: Reference | None = Field(default=None, description="A Provider's name.")
    default_model: OptionalText = None
    default_system_role: OptionalText = None
    default_temperature: Temperature | None = None
    default_max_tokens: PositiveInt | None = None
    deployed: bool | None = None
    subdomain: OptionalText = None
    custom_domain: CustomDomain | None = None
    app_name: OptionalText = None
    app_assistant: OptionalText = None
    app_welcome_message: OptionalText = None
    app_example_prompts: Annotated[list[Text], EmptyIfNull] | None = None
    app_placeholder: OptionalText = None
    app_info_url: OptionalText = None
    app_file_attachment: bool | None = None
    allowed_origins: Annotated[list[Text], EmptyIfNull] | None = Field(
        default=None, description="Browser origins that may call the client's chat routes."
    )


class StyleSection(SamModel):
    """The colours of one part of Smarter Chat (accepted and kept; samops serves no chat UI)."""

    background_color: OptionalText = None
    color: OptionalText = None
    border_color: OptionalText = None
    info_color: OptionalText = None
    link_color: OptionalText = None
    editor_background_color: OptionalText = None
    placeholder_color: OptionalText = None


class LLMClientStyles(SamModel):
    """``spec.config.styles`` of the current format: the chat UI's look (kept, shown by the
    chat configuration; samops serves no chat UI)."""

    app_background_image_size: Literal["cover", "contain", "auto"] | None = None
    app_background_image_url: OptionalText = None
    app_logo_url: OptionalText = None
    assistant_avatar_url: OptionalText = None
    user_avatar_url: OptionalText = None
    border_radius: OptionalText = None
    font_family: OptionalText = None
    font_size: OptionalText = None
    google_font: OptionalText = None
    buttons: StyleSection | None = None
    conversation_header: StyleSection | None = None
    incoming_message: StyleSection | None = None
    main_container: StyleSection | None = None
    message_input: StyleSection | None = None
    message_list: StyleSection | None = None
    outgoing_message: StyleSection | None = None
    typing_indicator: StyleSection | None = None


PROMPT_ATTRIBUTES = tuple(LLMClientPrompt.model_fields)
"""Settings the current format writes under ``spec.config.prompt``."""
STYLED_ATTRIBUTES = ("app_background_image_url", "app_logo_url")
"""Settings 0.14 writes in ``spec.config`` and the current format under ``styles``."""


def canonical_client(config: Any, spec: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """The updates that make a validated client (its ``config`` and ``spec`` models)
    canonical: (config updates, spec updates)."""
    config_updates: dict[str, Any] = {}
    current = config.prompt is not None or config.styles is not None or bool(spec.extensions)
    if config.prompt is not None:
        prompt = config.prompt
        config_updates.update({a: getattr(prompt, a) for a in prompt.model_fields_set})
        config_updates["prompt"] = None
    if config.styles is not None:
        styles = config.styles
        config_updates.update(
            {a: getattr(styles, a) for a in STYLED_ATTRIBUTES if a in styles.model_fields_set}
        )
        rest = styles.model_copy(update=dict.fromkeys(STYLED_ATTRIBUTES))
        config_updates["styles"] = rest if rest.model_dump(exclude_none=True) else None
    spec_updates: dict[str, Any] = {}
    if spec.extensions:
        spec_updates.update({"functions": list(spec.extensions), "extensions": []})
    if current:
        spec_updates["manifest_format"] = "current"
    return config_updates, spec_updates


def written_shape(manifest: dict[str, Any]) -> dict[str, Any]:
    """A canonical client's manifest (camelCase, defaults left out) in the shape its file
    used: the current format's when ``spec.manifestFormat`` says so, 0.14's otherwise."""
    spec = dict(manifest.get("spec") or {})
    current = spec.pop("manifestFormat", None) == "current"
    if not current:
        return {**manifest, "spec": spec}
    config = dict(spec.get("config") or {})
    prompt_keys = {to_camel(a) for a in PROMPT_ATTRIBUTES}
    styled_keys = {to_camel(a) for a in STYLED_ATTRIBUTES}
    prompt = {k: v for k, v in config.items() if k in prompt_keys}
    styles = dict(config.get("styles") or {})
    styles.update({k: v for k, v in config.items() if k in styled_keys})
    nested: dict[str, Any] = {"prompt": prompt}
    if styles:
        nested["styles"] = styles
    spec["config"] = nested
    if "functions" in spec:
        spec["extensions"] = spec.pop("functions")
    return {**manifest, "spec": spec}


ManifestFormat = Literal["current"]
