"""The example manifests (``sam/examples.py``) are valid: each kind has one, and together they
make a revision whose references all resolve."""

from __future__ import annotations

from dataclasses import dataclass

import yaml

from reconciler.sam.examples import EXAMPLES
from reconciler.sam.kinds import KINDS
from reconciler.sam.revision import validate_files


@dataclass(frozen=True)
class File:
    path: str
    blob: str
    data: bytes


def test_every_kind_has_an_example_and_together_they_are_a_valid_revision() -> None:
    assert set(EXAMPLES) == set(KINDS)
    files = [
        File(f"{kind}.yaml", kind, yaml.safe_dump(manifest).encode())
        for kind, manifest in EXAMPLES.items()
    ]
    revision = validate_files("examples", files)
    assert revision.valid, [d.render() for d in revision.diagnostics]
    assert revision.diagnostics == []
    assert sorted((r.kind, r.name) for r in revision.resources) == sorted(
        (m["kind"], m["metadata"]["name"]) for m in EXAMPLES.values()
    )
