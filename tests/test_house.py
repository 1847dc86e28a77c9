"""The house in order: a licence matching the package metadata, installs from the lock file,
CI running every check, and docs that name only revisions that exist."""

from __future__ import annotations

import re
import subprocess
import tomllib

import pytest
from packaging.requirements import Requirement

from tests.conftest import PROJECT_ROOT

PYPROJECT = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())
LOCK = (PROJECT_ROOT / "requirements.lock").read_text()
PINS = re.findall(r"^([A-Za-z0-9_.-]+)==([^ ;\\\n]+)", LOCK, flags=re.MULTILINE)
"""Every pin: a package may be pinned twice, for two Python versions (an environment marker)."""
LOCKED = dict(PINS)


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_licence_file_matches_the_metadata() -> None:
    assert PYPROJECT["project"]["license"] == "Apache-2.0"
    text = (PROJECT_ROOT / "LICENSE").read_text()
    assert text.lstrip().startswith("Apache License\n                           Version 2.0")
    assert "END OF TERMS AND CONDITIONS" in text


@pytest.mark.parametrize(
    "requirement",
    [
        *PYPROJECT["project"]["dependencies"],
        *PYPROJECT["project"]["optional-dependencies"]["dev"],
        *PYPROJECT["build-system"]["requires"],
    ],
)
def test_lock_pins_every_requirement_with_hashes(requirement: str) -> None:
    wanted = Requirement(requirement)
    pinned = {_normal(k): v for k, v in LOCKED.items()}
    assert _normal(wanted.name) in pinned, f"{wanted.name} is not in requirements.lock (make lock)"
    assert wanted.specifier.contains(pinned[_normal(wanted.name)], prereleases=True), (
        f"requirements.lock pins {wanted.name}=={pinned[_normal(wanted.name)]}, outside "
        f"{wanted.specifier} (run make lock)"
    )


def test_every_locked_package_has_a_hash() -> None:
    blocks = re.split(r"\n(?=[A-Za-z0-9_.-]+==)", LOCK.split("\n", 2)[2])
    assert len(blocks) == len(PINS)
    assert all("--hash=sha256:" in block for block in blocks)


def test_make_installs_from_the_lock_and_ci_runs_every_check() -> None:
    makefile = (PROJECT_ROOT / "Makefile").read_text()
    assert "--require-hashes --no-deps -r $(LOCK)" in makefile
    assert re.search(r"^lock:", makefile, flags=re.MULTILINE)
    assert re.search(r"^test-latest:", makefile, flags=re.MULTILINE)
    ci = (PROJECT_ROOT / ".ci" / "run").read_text()
    assert re.search(r"^make check$", ci, flags=re.MULTILINE)


def test_docs_name_only_revisions_that_exist() -> None:
    shallow = subprocess.run(
        ["git", "rev-parse", "--is-shallow-repository"],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    if shallow.returncode != 0:
        pytest.skip("not a git checkout")
    if shallow.stdout.strip() == "true":
        pytest.skip("a shallow clone does not hold the history the docs name")
    docs = [*(PROJECT_ROOT / "docs").glob("*.md"), PROJECT_ROOT / "README.md"]
    revs = {
        rev
        for doc in docs
        for rev in re.findall(r"^\s*rev:\s*(\S+)", doc.read_text(), flags=re.MULTILINE)
    }
    assert revs, "the pre-commit example names a rev"
    for rev in revs:
        found = subprocess.run(
            ["git", "cat-file", "-e", f"{rev}^{{commit}}"], cwd=PROJECT_ROOT, check=False
        )
        assert found.returncode == 0, f"the docs name rev {rev}, which this repository lacks"


def test_readme_links_stay_inside_the_clone() -> None:
    readme = (PROJECT_ROOT / "README.md").read_text()
    for target in re.findall(r"\]\(([^)#]+)", readme):
        if "://" not in target:
            assert (PROJECT_ROOT / target).exists(), f"README links to {target}, not in a clone"
