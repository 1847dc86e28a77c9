"""One small, valid example manifest per kind: a place to start a new file.

Part of the format; Smarter's manifest API serves them (``example-manifest/{Kind}``). Each
names the others it refers to (``example_*``), so the set validates as one revision; a test
holds every example valid, alone and together.
"""

from __future__ import annotations

from typing import Any

META = {"version": "0.1.0"}


def _manifest(kind: str, name: str, description: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "smarter.sh/v1",
        "kind": kind,
        "metadata": {"name": name, "description": description, **META},
        "spec": spec,
    }


PROMPT = {"provider": "openai", "systemRole": "Use this tool for questions about opening hours."}
SELECTOR = {"directive": "search_terms", "searchTerms": ["hours", "open"]}

EXAMPLES: dict[str, dict[str, Any]] = {
    "LLMClient": _manifest(
        "LLMClient",
        "example_client",
        "A support assistant with a plugin, a function and a key.",
        {
            "config": {
                "provider": "openai",
                "defaultModel": "gpt-4o-mini",
                "defaultSystemRole": "You are a helpful support assistant.",
                "defaultTemperature": 0.5,
                "defaultMaxTokens": 1024,
                "appName": "Example support",
                "appWelcomeMessage": "Hello! How can I help?",
            },
            "plugins": ["example_plugin"],
            "functions": ["calculator"],
            "apiKey": "example_key",
        },
    ),
    "Plugin": _manifest(
        "Plugin",
        "example_plugin",
        "Opening hours, from static data.",
        {
            "selector": SELECTOR,
            "prompt": PROMPT,
            "data": {"staticData": {"weekdays": "9 to 17", "weekends": "closed"}},
        },
    ),
    "SqlPlugin": _manifest(
        "SqlPlugin",
        "example_sql_plugin",
        "Opening hours of one shop, from a database.",
        {
            "selector": SELECTOR,
            "prompt": PROMPT,
            "connection": "example_sql_connection",
            "sqlData": {
                "sqlQuery": "SELECT opens, closes FROM hours WHERE shop = {shop}",
                "parameters": [
                    {"name": "shop", "type": "string", "description": "The shop's name."}
                ],
                "limit": 10,
            },
        },
    ),
    "ApiPlugin": _manifest(
        "ApiPlugin",
        "example_api_plugin",
        "Opening hours of one shop, from an HTTP API.",
        {
            "selector": SELECTOR,
            "prompt": PROMPT,
            "connection": "example_api_connection",
            "apiData": {
                "endpoint": "/shops/{shop}/hours/",
                "method": "GET",
                "parameters": [
                    {"name": "shop", "type": "string", "description": "The shop's name."}
                ],
            },
        },
    ),
    "SqlConnection": _manifest(
        "SqlConnection",
        "example_sql_connection",
        "A PostgreSQL database, its password from a Secret.",
        {
            "connection": {
                "dbEngine": "django.db.backends.postgresql",
                "hostname": "db.example.com",
                "port": 5432,
                "database": "shops",
                "username": "reader",
                "password": "example_secret",
            }
        },
    ),
    "ApiConnection": _manifest(
        "ApiConnection",
        "example_api_connection",
        "An HTTP API, its token from a Secret.",
        {
            "connection": {
                "baseUrl": "https://api.example.com/",
                "authMethod": "token",
                "apiKey": "example_secret",
                "timeout": 10,
            }
        },
    ),
    "Secret": _manifest(
        "Secret",
        "example_secret",
        "A value read from the serving host's environment, never from git.",
        {"config": {"valueFrom": {"env": "EXAMPLE_TOKEN"}}},
    ),
    "Provider": _manifest(
        "Provider",
        "example_provider",
        "An OpenAI-compatible endpoint.",
        {
            "provider": {
                "name": "Example provider",
                "base_url": "https://llm.example.com/v1",
                "api_key": "example_secret",
                "default_model": "example-model",
            }
        },
    ),
    "SmarterAuthToken": _manifest(
        "SmarterAuthToken",
        "example_key",
        "A key's digest: 'samops keys create NAME' makes a key and prints this manifest.",
        {
            "config": {
                "isActive": True,
                "digest": ["sha256:" + "0" * 64],
                "username": "example",
            }
        },
    ),
    "Budget": _manifest(
        "Budget",
        "example_budget",
        "At most 20 dollars a month for the example client, 200 in all.",
        {
            "config": {
                "unit": "cost",
                "periodicLimit": 20,
                "absoluteLimit": 200,
                "period": "month",
                "action": "block",
                "warningThreshold": 80,
                "message": "The example client has spent its budget for this month.",
            },
            "resources": [{"kind": "LLMClient", "name": "example_client"}],
        },
    ),
}
"""Example manifests by kind, as written in git (camelCase keys)."""
