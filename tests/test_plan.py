"""Plan is a pure function: ordered changes with field-level diffs, secrets as fingerprints."""

from __future__ import annotations

import json

from reconciler.desired import ResourceState, desired_state
from reconciler.plan import FieldChange, compute_plan, diff_fields
from reconciler.plan_render import plan_to_json, render_markdown, render_text
from reconciler.sealing import generate_keypair, seal
from tests.conftest import validate_text

PUBLIC_KEY, _ = generate_keypair()
CLIENT = """\
apiVersion: smarter.sh/v1
kind: LLMClient
metadata: {{name: bot}}
spec:
  config: {{defaultSystemRole: {role}, defaultTemperature: {temperature}}}
  plugins: [{plugins}]
"""
PLUGIN = """\
---
apiVersion: smarter.sh/v1
kind: Plugin
metadata: {{name: {name}}}
spec:
  selector: {{directive: always}}
  prompt: {{systemRole: Use it.}}
  data: {{staticData: {{a: b}}}}
"""
SECRET = """\
---
apiVersion: smarter.sh/v1
kind: Secret
metadata: {{name: token}}
spec: {{config: {{{config}}}}}
"""


def state(text: str, *, plaintext: bool = False) -> dict[tuple[str, str], ResourceState]:
    revision = validate_text(text, allow_plaintext_secrets=plaintext)
    assert revision.valid, revision.diagnostics
    return desired_state(revision.resources)


def client(role: str = "Be brief.", temperature: float = 0.5, plugins: str = "faq") -> str:
    text = CLIENT.format(role=role, temperature=temperature, plugins=plugins)
    return text + "".join(PLUGIN.format(name=n.strip()) for n in plugins.split(",") if n)


def test_same_state_gives_an_empty_plan() -> None:
    assert compute_plan(state(client()), state(client())).empty


def test_creates_follow_dependencies_and_deletes_reverse_them() -> None:
    before = state(client(plugins="faq") + SECRET.format(config="valueFrom: {env: A}"))
    after = state(client(plugins="hours"))
    plan = compute_plan(after, before)
    assert [(c.action, c.kind, c.name) for c in plan.changes] == [
        ("create", "Plugin", "hours"),
        ("update", "LLMClient", "bot"),
        ("delete", "Plugin", "faq"),
        ("delete", "Secret", "token"),
    ]
    plan_from_nothing = compute_plan(before, {})
    assert [c.kind for c in plan_from_nothing.changes] == ["Secret", "Plugin", "LLMClient"]


def test_update_lists_exactly_the_changed_fields() -> None:
    plan = compute_plan(state(client(role="Be thorough.", temperature=0.9)), state(client()))
    (change,) = plan.changes
    assert [(f.path, f.before, f.after) for f in change.fields] == [
        ("spec.config.defaultSystemRole", "Be brief.", "Be thorough."),
        ("spec.config.defaultTemperature", 0.5, 0.9),
    ]


def test_json_fields_of_a_create_and_a_delete_are_exactly_the_leaves() -> None:
    secret = state(SECRET.format(config="valueFrom: {env: A}"))
    created = plan_to_json(compute_plan(secret, {}))["changes"][0]["fields"]
    deleted = plan_to_json(compute_plan({}, secret))["changes"][0]["fields"]
    leaves = [
        ("metadata.name", "token"),
        ("metadata.tags", []),
        ("metadata.annotations", []),
        ("spec.config.valueFrom.env", "A"),
    ]
    assert created == [{"path": p, "before": None, "after": v} for p, v in leaves]
    assert deleted == [{"path": p, "before": v, "after": None} for p, v in leaves]
    assert diff_fields({}, {"spec": {"headers": {}}}) == (FieldChange("spec.headers", None, {}),)


def test_plaintext_secret_change_shows_fingerprints_not_values() -> None:
    before = state(SECRET.format(config="value: hunter2"), plaintext=True)
    after = state(SECRET.format(config="value: hunter3"), plaintext=True)
    plan = compute_plan(after, before)
    shown = json.dumps(plan_to_json(plan)) + render_text(plan) + render_markdown(plan)
    assert "hunter" not in shown
    (field,) = plan.changes[0].fields
    assert field.path == "spec.config.valueFingerprint"
    assert field.before.startswith("sha256:")
    assert field.before != field.after


def test_sealed_secret_is_shown_as_a_digest_of_the_ciphertext() -> None:
    sealed = seal("v", secret_name="token", public_key=PUBLIC_KEY)
    plan = compute_plan(state(SECRET.format(config=f"encryptedValue: '{sealed}'")), {})
    values = [f.after for f in plan.changes[0].fields if f.path.endswith("encryptedValue")]
    assert values == [values[0]]
    assert values[0].startswith("sealed:")
    assert sealed not in json.dumps(plan_to_json(plan))


def test_renderers_agree_on_the_summary() -> None:
    plan = compute_plan(state(client(role="New.")), state(client()))
    text = render_text(plan)
    markdown = render_markdown(plan, revision="0123456789abcdef")
    document = plan_to_json(plan, revision="0123456789abcdef")
    assert text.splitlines()[-1] == "Plan: 0 to create, 1 to update, 0 to delete."
    assert "Plan: 0 to create, 1 to update, 0 to delete." in markdown
    assert markdown.startswith("### samops plan for `0123456789ab`")
    assert '| `spec.config.defaultSystemRole` | `"Be brief."` | `"New."` |' in markdown
    assert document["summary"] == {"create": 0, "update": 1, "delete": 0}
    assert set(document) == {"version", "revision", "summary", "changes"}
    assert set(document["changes"][0]) == {"action", "kind", "name", "file", "fields"}


def test_colour_only_when_asked() -> None:
    plan = compute_plan(state(client()), {})
    assert "\x1b[" not in render_text(plan)
    assert "\x1b[" in render_text(plan, color=True)
