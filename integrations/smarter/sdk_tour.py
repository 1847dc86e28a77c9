"""Every call of Smarter's official Python SDK that samops answers, run against a server.

Start samops (``make run``), then, with the SDK installed (``pip install smarter-api==0.6.0``;
the dev extra has it)::

    python integrations/smarter/sdk_tour.py [--url http://127.0.0.1:8080] [--client support]
        [--key KEY] [--admin-key KEY]

One line per call: the call, then what it answered. Without ``--admin-key`` the admin's reads
(describe, get, logs, secrets, plugin manifests) are shown refused, as they are. Exits 1 when
a call that should answer does not. ``tests/smarter/test_sdk_tour.py`` runs it against a real
``samops run``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

from smarter import Smarter
from smarter.core.exceptions import SmarterError

Call = tuple[str, Callable[[], Any], bool]
"""A label, the call, and whether it must answer (False: a refusal is the expected answer)."""


def _calls(public: Smarter, admin: Smarter, client: str) -> list[Call]:
    found = public.llm_clients.find(client)
    clients = public.llm_clients
    with_admin = admin.api_key != public.api_key
    chat = clients.chat(found.id)

    def streamed() -> str:
        with clients.stream(found.id, 'call:calculator{"expression": "6*7"}') as stream:
            kinds = [event.type for event in stream]
            return f"{kinds} then {stream.response.text[:60]!r}"

    return [
        ("whoami()", lambda: public.whoami().user.username, True),
        ("version()", lambda: public.version().api.version, True),
        ("kinds()", lambda: [k.api_kind for k in public.kinds()], True),
        ("status()", lambda: public.status().compute, True),
        ("llm_clients.list()", lambda: [c.name for c in clients.list()], True),
        ("llm_clients.find(name)", lambda: (found.id, found.hashed_id), True),
        ("llm_clients.retrieve(id)", lambda: clients.retrieve(found.id).name, True),
        ("llm_clients.retrieve(hashed_id)", lambda: clients.retrieve(found.hashed_id).name, True),
        (
            "llm_clients.plugins(id)",
            lambda: [p.plugin_meta.name for p in clients.plugins(found.id)],
            True,
        ),
        (
            "llm_clients.extensions(id)",
            lambda: [e.name for e in clients.extensions(found.id)],
            True,
        ),
        (
            "llm_clients.api_keys(id)",
            lambda: [k.to_dict() for k in clients.api_keys(found.id)],
            True,
        ),
        (
            "llm_clients.config(id)",
            lambda: clients.config(found.id, verbose=True).session_key[:12] + "…",
            True,
        ),
        ("llm_clients.prompt(id, text)", lambda: clients.prompt(found.id, "hello").text, True),
        ("chat.send() x2", lambda: [chat.send("hi").text, chat.send("again").text], True),
        ("llm_clients.stream(id, text)", streamed, True),
        ("llm_clients.json_schema()", lambda: sorted(clients.json_schema()["properties"]), True),
        ("llm_clients.example_manifest()", lambda: clients.example_manifest().metadata.name, True),
        (
            "manifests.validate(example)",
            lambda: public.manifests.validate(clients.example_manifest()).valid,
            True,
        ),
        ("plugins.list()", lambda: [p.name for p in public.plugins.list()], True),
        ("providers.list()", lambda: [p.name for p in public.providers.list()], True),
        (
            "providers.models('openai')",
            lambda: [m.name for m in public.providers.models("openai")],
            True,
        ),
        ("history.sessions()", lambda: len(public.history.sessions()), True),
        (
            "llm_clients.describe(name)",
            lambda: admin.llm_clients.describe(client).spec.get("config") is not None,
            with_admin,
        ),
        ("manifests.get('LLMClient')", lambda: admin.manifests.get("LLMClient").names, with_admin),
        (
            "manifests.logs('LLMClient', name)",
            lambda: (admin.manifests.logs("LLMClient", client).data or {}).get(
                "last_changed_revision"
            ),
            with_admin,
        ),
        ("secrets.list()", lambda: [s.name for s in admin.secrets.list()], with_admin),
        (
            "manifests.apply(example)",
            lambda: admin.manifests.apply(clients.example_manifest()),
            False,
        ),
        ("llm_clients.delete(name)", lambda: admin.llm_clients.delete(client), False),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default="http://127.0.0.1:8080")
    parser.add_argument("--client", default="support", help="a public client's name")
    parser.add_argument("--key", default="no-key", help="an API key (the SDK always sends one)")
    parser.add_argument("--admin-key", help="the admin key, for the admin's reads")
    args = parser.parse_args(argv)
    options: dict[str, Any] = {"base_url": args.url, "max_retries": 0, "timeout": 60}
    with (
        Smarter(api_key=args.key, **options) as public,
        Smarter(api_key=args.admin_key or args.key, **options) as admin,
    ):
        failed = 0
        for label, call, must_answer in _calls(public, admin, args.client):
            try:
                answer = call()
            except SmarterError as exc:
                outcome = "refused" if not must_answer else "FAILED"
                failed += must_answer
                print(f"{label:36} {outcome}: {type(exc).__name__}: {str(exc)[:100]}")
                continue
            if not must_answer:
                failed += 1
                print(f"{label:36} FAILED: answered {answer!r:.100} where a refusal was due")
                continue
            print(f"{label:36} {answer!r:.110}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
