"""Smarter's JSON objects of a served client: as its REST API lists them, and its chat config.

Serve stage, used by ``smarter_reads.py`` and ``smarter_routes.py``. The shapes are those the
official SDK (``smarter-api``) reads: REST objects in camelCase (``hashedId``,
``isAuthenticationRequired``), the chat contract (version 2, ``X-Smarter-Capabilities:
chat-contract-v2``) in snake_case. Ids come from ``reconciler/sam/ids.py``: the same in every
process and replica, for as long as a resource keeps its name. Nothing here holds a key or a
secret value: a client's keys are listed by id and short digest.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from reconciler.sam.ids import hashed_id, resource_id
from reconciler.sam.kinds import Document, Provider, Secret
from serve.compiled import CompiledClient, CompiledPlugin

CHAT_CONTRACT = 2
PLUGIN_CLASSES = {"Plugin": "static", "SqlPlugin": "sql", "ApiPlugin": "api"}
SHORT_DIGEST_CHARS = 12
"""Hex characters of a key's digest shown (after ``sha256:``): enough to tell keys apart."""
KEY_ID_NAMESPACE = uuid.UUID("7d1f6f1e-4a5b-4e0c-9a57-5a6d6f707301")


def _metadata(document: Document) -> dict[str, Any]:
    meta = document.metadata.model_dump(mode="json", by_alias=True)
    return {
        "description": meta.get("description"),
        "version": meta.get("version"),
        "tags": meta.get("tags") or [],
        "annotations": meta.get("annotations") or [],
    }


def plugin_object(plugin: CompiledPlugin) -> dict[str, Any]:
    """A plugin as ``/api/v1/plugins/`` lists it (the SDK's ``Plugin``)."""
    return {
        "id": resource_id(plugin.kind, plugin.name),
        "hashedId": hashed_id(plugin.kind, plugin.name),
        "name": plugin.name,
        **_metadata(plugin.document),
        "kind": plugin.kind,
        "pluginClass": PLUGIN_CLASSES[plugin.kind],
        "ready": True,
        "canDelete": False,
    }


def plugin_links(client: CompiledClient) -> list[dict[str, Any]]:
    """``/llm-clients/{id}/plugins/``: a client's plugins (the SDK's ``LLMClientPlugin``)."""
    return [
        {
            "id": resource_id("LLMClientPlugin", f"{client.name}/{plugin.name}"),
            "llmclient": client.id,
            "pluginMeta": plugin_object(plugin),
        }
        for plugin in client.plugins
    ]


def extension_links(client: CompiledClient) -> list[dict[str, Any]]:
    """``/llm-clients/{id}/extensions``: its built-in functions (Smarter's extensions)."""
    return [
        {
            "id": resource_id("LLMClientExtension", f"{client.name}/{tool.name}"),
            "name": tool.name,
            "extension": resource_id("Extension", tool.name),
            "llmclient": client.id,
            "enabled": True,
        }
        for tool in client.functions
    ]


def short_digest(digest: str) -> str:
    algorithm, _, hexdigest = digest.partition(":")
    return f"{algorithm}:{hexdigest[:SHORT_DIGEST_CHARS]}…"


def api_key_links(client: CompiledClient) -> list[dict[str, Any]]:
    """``/llm-clients/{id}/apikeys/``: the key a client requires, by id and short digests
    (the SDK's ``LLMClientApiKey``; ``apiKey`` is a public key id, never the key)."""
    token = client.key.token
    if not client.key.required or token is None:
        return []
    return [
        {
            "id": resource_id("SmarterAuthToken", token),
            "llmclient": client.id,
            "apiKey": str(uuid.uuid5(KEY_ID_NAMESPACE, token)),
            "name": token,
            "digests": [short_digest(d) for d in client.key.digests],
            "expiresAt": client.key.expires_at.isoformat() if client.key.expires_at else None,
        }
    ]


def urls(client: CompiledClient, base: str, host_suffix: str) -> dict[str, str]:
    """Where a client is reached: by id under ``base``, and on its own host name."""
    host = f"{client.name.replace('_', '-')}{host_suffix}"
    scheme = base.partition("://")[0] or "http"
    return {
        "defaultHost": host,
        "defaultUrl": f"{scheme}://{host}/",
        "urlLlmclient": f"{base}/api/v1/llm-clients/{client.id}/prompt/",
        "urlChatConfig": f"{base}/api/v1/llm-clients/{client.id}/config/",
    }


def llm_client_object(client: CompiledClient, base: str, host_suffix: str) -> dict[str, Any]:
    """A client as ``/api/v1/llm-clients/`` lists it (the SDK's ``LLMClient``)."""
    config = client.document.spec.config
    extensions = extension_links(client)
    plugins = [
        {"id": link["id"], "name": link["pluginMeta"]["name"]} for link in plugin_links(client)
    ]
    tools = [{"id": e["id"], "name": e["name"], "kind": "Extension"} for e in extensions]
    tools += [{"id": p["id"], "name": p["name"], "kind": "Plugin"} for p in plugins]
    return {
        "id": client.id,
        "hashedId": client.hashed_id,
        "name": client.name,
        **_metadata(client.document),
        "rfc1034CompliantName": client.name.replace("_", "-"),
        "provider": client.provider,
        "defaultModel": client.model,
        "defaultSystemRole": client.system_role,
        "defaultTemperature": client.temperature,
        "defaultMaxTokens": client.max_tokens,
        "deployed": config.deployed,
        **urls(client, base, host_suffix),
        "ready": True,
        "isAuthenticationRequired": client.key.required,
        "canDelete": False,
        "extensions": extensions,
        "plugins": plugins,
        "mcpclients": [],
        "guardrails": [],
        "tools": tools,
        "apiKeys": api_key_links(client),
        "customDomains": [],
    }


def chat_config(
    client: CompiledClient,
    session_key: str,
    history: Sequence[Mapping[str, Any]],
    *,
    base: str,
    verbose: bool,
) -> dict[str, Any]:
    """Smarter's chat configuration of a client (the SDK's ``PromptChatApiConfig``): the
    client, a session and its messages, the counts of plugins and extensions (and, verbose,
    their lists). The keys samops answered before (``name``, ``requires_key``, the UI fields
    in camelCase) stay, for clients written against them."""
    config = client.document.spec.config
    plugins = [
        {
            "id": resource_id("LLMClientPlugin", f"{client.name}/{plugin.name}"),
            "llmclient": client.id,
            "plugin_meta": {
                "id": resource_id(plugin.kind, plugin.name),
                "name": plugin.name,
                **_metadata(plugin.document),
                "plugin_class": PLUGIN_CLASSES[plugin.kind],
            },
        }
        for plugin in client.plugins
    ]
    extensions = extension_links(client)
    llmclient = {
        "id": client.id,
        "name": client.name,
        "url_llmclient": f"{base}/api/v1/llm-clients/{client.id}/prompt/",
        "version": client.document.metadata.version,
        "deployed": config.deployed,
        "provider": client.provider,
        "default_model": client.model,
        "default_system_role": client.system_role,
        "app_name": config.app_name,
        "app_assistant": config.app_assistant,
        "app_welcome_message": config.app_welcome_message,
        "app_example_prompts": list(config.app_example_prompts),
        "app_placeholder": config.app_placeholder,
        "app_info_url": config.app_info_url,
        "app_file_attachment": config.app_file_attachment,
        "styles": chat_styles(client),
        "total_tools": len(plugins) + len(extensions),
    }
    return {
        "contract": CHAT_CONTRACT,
        "session_key": session_key,
        "sandbox_mode": False,
        "debug_mode": False,
        "meta_data": {
            "ready": True,
            "is_valid": True,
            "is_deployed": config.deployed,
            "is_authentication_required": client.key.required,
            "is_custom_domain": False,
        },
        "llmclient": llmclient,
        "history": {"chat_history": list(history)},
        "plugins": {
            "meta_data": {
                "total_plugins": len(plugins),
                "plugins_returned": len(plugins) if verbose else 0,
            },
            "plugins": plugins if verbose else [],
        },
        "extensions": {
            "meta_data": {
                "total_extensions": len(extensions),
                "extensions_returned": len(extensions) if verbose else 0,
            },
            "extensions": extensions if verbose else [],
        },
        "name": client.name,
        "requires_key": client.key.required,
        **client.ui,
    }


def plugin_manifest(plugin: CompiledPlugin) -> dict[str, Any]:
    """A plugin's manifest as ``samops describe`` prints it (the SDK's ``plugins.retrieve``)."""
    return plugin.document.model_dump(mode="json", by_alias=True, exclude_defaults=True)


def provider_object(name: str, document: Provider | None, base_url: str | None) -> dict[str, Any]:
    """A provider as ``/api/v1/providers/`` lists it (the SDK's ``Provider``); the built-in
    ``openai`` has no manifest."""
    config = document.spec.provider if document is not None else None
    return {
        "id": resource_id("Provider", name),
        "hashedId": hashed_id("Provider", name),
        "name": name,
        "displayName": config.name if config is not None else "OpenAI (built in)",
        "description": (document.metadata.description if document is not None else None)
        or (config.description if config is not None else None),
        "baseUrl": str(config.base_url) if config is not None else base_url,
        "defaultModel": config.default_model if config is not None else None,
        "websiteUrl": config.website_url if config is not None else None,
        "docsUrl": config.docs_url if config is not None else None,
        "isActive": True,
        "builtIn": document is None,
    }


def model_object(model: str) -> dict[str, Any]:
    """A model a provider serves here (the SDK's ``ProviderModel``)."""
    return {"name": model, "supportsStreaming": True, "supportsTools": True}


def secret_object(secret: Secret) -> dict[str, Any]:
    """A Secret as ``/api/v1/secrets/`` lists it (the SDK's ``Secret``): its metadata and
    where its value comes from (an environment variable, a file, sealed in git), never the
    value."""
    config = secret.spec.config
    source: dict[str, Any]
    if config.value_from is not None:
        source = config.value_from.model_dump(mode="json", exclude_none=True)
    elif config.encrypted_value is not None:
        source = {"sealed": True}
    else:
        source = {"plaintextInGit": True}
    expires = config.expiration_date
    return {
        "id": resource_id("Secret", secret.name),
        "hashedId": hashed_id("Secret", secret.name),
        "name": secret.name,
        **_metadata(secret),
        "expiresAt": expires.isoformat() if expires is not None else None,
        "valueFrom": source,
    }


def chat_styles(client: CompiledClient) -> dict[str, Any] | None:
    """The chat UI's look as Smarter's chat contract spells it (snake_case), or None."""
    config = client.document.spec.config
    styles = (
        config.styles.model_dump(mode="json", by_alias=False, exclude_none=True)
        if config.styles
        else {}
    )
    for attribute in ("app_logo_url", "app_background_image_url"):
        if getattr(config, attribute):
            styles[attribute] = getattr(config, attribute)
    return styles or None
