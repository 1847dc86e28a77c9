"""Validating a revision again costs in proportion to what changed: files are cached by blob."""

from __future__ import annotations

from reconciler.sam.revision import ParseCache
from reconciler.source import GitSource, validate_source
from tests.conftest import GitRepo

CLIENT = """\
apiVersion: smarter.sh/v1
kind: LLMClient
metadata: {{name: bot_{n}}}
spec:
  config: {{defaultSystemRole: {role}}}
"""


def test_unchanged_files_are_not_parsed_again(git_repo: GitRepo) -> None:
    for n in range(5):
        git_repo.write(f"c{n}.yaml", CLIENT.format(n=n, role="Be brief."))
    git_repo.commit("five clients")
    cache = ParseCache()
    first = validate_source(GitSource(git_repo.root), cache=cache)
    git_repo.write("c3.yaml", CLIENT.format(n=3, role="Be thorough."))
    git_repo.commit("edit one client")

    second = validate_source(GitSource(git_repo.root), cache=cache)

    assert (cache.misses, cache.hits) == (6, 4)
    assert first.valid and second.valid
    roles = {r.name: r.model.spec.config.default_system_role for r in second.resources}  # type: ignore[attr-defined]
    assert roles["bot_3"] == "Be thorough." and roles["bot_0"] == "Be brief."


def test_cross_file_checks_still_run_on_cached_files(git_repo: GitRepo) -> None:
    git_repo.write(
        "c.yaml", CLIENT.format(n=1, role="x").replace("config:", "plugins: [faq]\n  config:")
    )
    git_repo.commit()
    cache = ParseCache()
    assert not validate_source(GitSource(git_repo.root), cache=cache).valid
    assert not validate_source(GitSource(git_repo.root), cache=cache).valid
    assert cache.hits == 1
