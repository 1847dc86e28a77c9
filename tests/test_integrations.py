"""The integrations that run samops on pull requests: GitHub workflow, GitLab job, pre-commit.

They are files users copy or include, not code samops runs, so their structure is checked as
parsed YAML, and each part that can run offline runs for real: the shell steps against real
git repositories in temporary folders with this venv's ``samops``, the github-script body
under node with a recording stand-in for Octokit, ``post_note.py`` against a server on
127.0.0.1 imitating GitLab's notes endpoints, and the pre-commit hooks' entries on copies of
the example manifests.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import threading
import urllib.parse
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import GIT_ENV, MANIFESTS, PROJECT_ROOT, GitRepo

GITHUB_WORKFLOW = PROJECT_ROOT / "integrations" / "github" / "samops-plan.yml"
GITLAB_JOB = PROJECT_ROOT / "integrations" / "gitlab" / "samops-plan.gitlab-ci.yml"
POST_NOTE = PROJECT_ROOT / "integrations" / "gitlab" / "post_note.py"
PRE_COMMIT_HOOKS = PROJECT_ROOT / ".pre-commit-hooks.yaml"
REVIEW_DOC = PROJECT_ROOT / "docs" / "review.md"
MARKER = "<!-- samops-plan -->"
VENV_BIN = Path(sys.executable).parent
TOKEN = "glpat-test-token-never-printed"

# Edits of the example manifests that make a pull request's head.
PUBLIC_CLIENT = ("manifests/clients/stackademy.yaml", "  apiKey: stackademy_advisor_key\n", "")
UNKNOWN_KEY = ("manifests/clients/lab.yaml", "    - datemath\n", "    - datemath\n  bogusKey: 1\n")
IGNORED_KEY = ("manifests/clients/lab.yaml", "    - datemath\n", "    - datemath\nstatus: {}\n")


def _load(path: Path) -> dict[Any, Any]:
    data = yaml.safe_load(path.read_text())
    assert isinstance(data, dict), f"{path} is not a mapping"
    return data


def _steps() -> list[dict[str, Any]]:
    steps = _load(GITHUB_WORKFLOW)["jobs"]["plan"]["steps"]
    assert isinstance(steps, list)
    return steps


def _step(name_part: str) -> dict[str, Any]:
    (step,) = [s for s in _steps() if name_part in s.get("name", "")]
    return step


def _gitlab_job() -> dict[str, Any]:
    job = _load(GITLAB_JOB)["samops-plan"]
    assert isinstance(job, dict)
    return job


def _hooks() -> dict[str, dict[str, Any]]:
    hooks = yaml.safe_load(PRE_COMMIT_HOOKS.read_text())
    assert isinstance(hooks, list)
    return {hook["id"]: hook for hook in hooks}


def _edit(root: Path, edit: tuple[str, str, str]) -> None:
    path, old, new = edit
    text = (root / path).read_text()
    assert old in text, f"{path} no longer holds {old!r}: update the test's edit"
    (root / path).write_text(text.replace(old, new, 1))


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """A CI-like environment: this venv's samops and python first on PATH, no user git config."""
    path = f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}"
    return {**os.environ, **GIT_ENV, "HOME": str(tmp_path), "PATH": path, **extra}


class PullRequest:
    """An origin repository with the example manifests on main, a branch changing them, and
    a commit on main made after the branch left it; plus a CI clone checked out at the head."""

    def __init__(self, tmp_path: Path, edit: tuple[str, str, str]) -> None:
        origin = GitRepo(tmp_path / "origin")
        shutil.copytree(MANIFESTS, origin.root / "manifests")
        self.merge_base = origin.commit("base")
        origin.git("checkout", "--quiet", "-b", "feature")
        _edit(origin.root, edit)
        self.head = origin.commit("the pull request")
        origin.git("checkout", "--quiet", "main")
        lab = (origin.root / "manifests/clients/lab.yaml").read_text()
        origin.write("manifests/clients/later.yaml", lab.replace("lab_assistant", "merged_later"))
        self.base = origin.commit("merged into main after the branch left it")
        self.clone = tmp_path / "clone"
        origin.git("clone", "--quiet", str(origin.root), str(self.clone))
        subprocess.run(
            ["git", "checkout", "--quiet", self.head],
            cwd=self.clone,
            check=True,
            env=_env(tmp_path),
        )


# --- GitHub Actions ---------------------------------------------------------------------------


def test_github_workflow_runs_on_pull_requests_touching_the_manifests() -> None:
    workflow = _load(GITHUB_WORKFLOW)
    triggers = workflow[True]  # YAML 1.1 reads a bare `on` as true
    assert list(triggers) == ["pull_request"], "pull_request_target would run with secrets"
    assert "manifests/**" in triggers["pull_request"]["paths"]
    assert workflow["env"]["MANIFESTS_PATH"] == "manifests"


def test_github_workflow_asks_only_to_read_code_and_write_pull_requests() -> None:
    assert _load(GITHUB_WORKFLOW)["permissions"] == {
        "contents": "read",
        "pull-requests": "write",
    }


def test_github_workflow_pins_actions_to_major_versions() -> None:
    uses = [step["uses"] for step in _steps() if "uses" in step]
    assert {u.split("@")[0] for u in uses} == {
        "actions/checkout",
        "actions/setup-python",
        "actions/github-script",
    }
    assert all(re.fullmatch(r"[\w-]+/[\w-]+@v\d+", u) for u in uses), uses


def test_github_workflow_checks_out_full_history_and_python_3_11_or_later() -> None:
    checkout = _step("Check out")
    assert checkout["with"]["fetch-depth"] == 0
    python = _step("Python")["with"]["python-version"]
    assert tuple(int(part) for part in python.split(".")) >= (3, 11)


def test_github_workflow_installs_from_git_url_or_version() -> None:
    run = _step("Install")["run"]
    assert 'pip install --quiet "git+${SAMOPS_GIT_URL}@${SAMOPS_GIT_REF}"' in run
    assert 'pip install --quiet "samops==$SAMOPS_VERSION"' in run
    env = _load(GITHUB_WORKFLOW)["env"]
    assert "vars.SAMOPS_GIT_URL ||" in env["SAMOPS_GIT_URL"]
    assert "vars.SAMOPS_FAIL_ON || 'high'" in env["SAMOPS_FAIL_ON"]


def test_github_plan_step_plans_between_pull_request_shas_as_markdown() -> None:
    step = _step("Plan")
    assert step["env"]["HEAD_SHA"] == "${{ github.event.pull_request.head.sha }}"
    assert step["env"]["BASE_SHA"] == "${{ github.event.pull_request.base.sha }}"
    command = " ".join(step["run"].replace("\\\n", " ").split())
    assert (
        'samops plan --repo . --path "$MANIFESTS_PATH" --base "$base" --head "$HEAD_SHA" '
        '--format markdown "${fail_on[@]}"'
    ) in command
    assert '--fail-on "$SAMOPS_FAIL_ON"' in command


def test_github_run_steps_take_expressions_only_through_env_and_parse() -> None:
    for step in _steps():
        if "run" in step:
            assert "${{" not in step["run"], f"{step['name']}: pass values through env"
            subprocess.run(["bash", "-n", "-c", step["run"]], check=True)


def test_github_comment_step_finds_its_comment_by_the_marker() -> None:
    script = _step("comment")["with"]["script"]
    assert f"const marker = '{MARKER}';" in script
    for call in ("listComments", "updateComment", "createComment"):
        assert f"github.rest.issues.{call}" in script


def _run_plan_step(tmp_path: Path, pull: PullRequest, *, base: str, head: str) -> dict[str, str]:
    outputs = tmp_path / "github-output"
    outputs.touch()
    env = _env(
        tmp_path,
        MANIFESTS_PATH="manifests",
        SAMOPS_FAIL_ON="high",
        BASE_SHA=base,
        HEAD_SHA=head,
        PLAN_DIR=str(tmp_path),
        GITHUB_OUTPUT=str(outputs),
        GITHUB_SERVER_URL="https://github.example",
        GITHUB_REPOSITORY="acme/manifests",
        GITHUB_RUN_ID="42",
    )
    # GitHub runs `run` with `bash -e {0}`.
    done = subprocess.run(
        ["bash", "-e", "-c", _step("Plan")["run"]],
        cwd=pull.clone,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return dict(line.split("=", 1) for line in outputs.read_text().splitlines())


def test_github_plan_step_reports_a_flag_and_leaves_later_base_commits_out(tmp_path: Path) -> None:
    pull = PullRequest(tmp_path, PUBLIC_CLIENT)
    outputs = _run_plan_step(tmp_path, pull, base=pull.base, head=pull.head)
    assert outputs["status"] == "3"
    body = Path(outputs["body"]).read_text()
    assert body.startswith(MARKER + "\n")
    assert "client-public" in body
    assert pull.merge_base[:12] in body
    assert "merged_later" not in body, "a commit merged into main later is shown reverted"


def test_github_plan_step_writes_a_marked_body_when_no_plan_is_printed(tmp_path: Path) -> None:
    pull = PullRequest(tmp_path, PUBLIC_CLIENT)
    outputs = _run_plan_step(tmp_path, pull, base=pull.base, head="0" * 40)
    assert outputs["status"] == "1"
    body = Path(outputs["body"]).read_text()
    assert body.startswith(MARKER + "\n### samops plan could not run (exit 1)")
    assert "0" * 40 in body.split("```")[1], "the error is not quoted"
    assert "https://github.example/acme/manifests/actions/runs/42" in body


@pytest.mark.parametrize(
    ("plan_status", "job_status"),
    [
        pytest.param("0", 0, id="valid"),
        pytest.param("1", 1, id="invalid"),
        pytest.param("3", 3, id="flagged"),
        pytest.param("2", 1, id="usage-error"),
    ],
)
def test_github_gate_step_fails_the_job_on_invalid_or_flagged(
    tmp_path: Path, plan_status: str, job_status: int
) -> None:
    env = _env(tmp_path, PLAN_STATUS=plan_status, SAMOPS_FAIL_ON="high")
    done = subprocess.run(
        ["bash", "-e", "-c", _step("Fail on")["run"]], env=env, capture_output=True, text=True
    )
    assert done.returncode == job_status
    assert ("::error" in done.stdout) == (job_status != 0)


# The github-script step's body, run by node as actions/github-script runs it: as the body of
# an async function of (require, github, context, core), with Octokit replaced by a recorder.
GITHUB_SCRIPT_HARNESS = r"""
const fs = require('fs');
const [script, scenario] = process.argv.slice(2).map((p) => fs.readFileSync(p, 'utf8'));
const s = JSON.parse(scenario);
const calls = [];
const recorded = (name, result) => async (params) => {
  calls.push([name, params]);
  if (s.fail === name) {
    const error = new Error('Resource not accessible by integration');
    error.status = s.failStatus;
    throw error;
  }
  return result;
};
const github = {
  paginate: async (method, params) => method(params),
  rest: { issues: {
    listComments: recorded('list', s.comments),
    updateComment: recorded('update', { data: {} }),
    createComment: recorded('create', { data: { html_url: 'https://github.example/c/9' } }),
  } },
};
const summary = { text: '', addRaw(t) { this.text += t; return this; },
                  async write() { calls.push(['summary', this.text]); } };
const core = { summary, info: (m) => calls.push(['info', m]),
               warning: (m) => calls.push(['warning', m]) };
const context = { repo: { owner: 'acme', repo: 'manifests' },
                  payload: { pull_request: s.pull_request } };
const AsyncFunction = Object.getPrototypeOf(async () => null).constructor;
new AsyncFunction('require', 'github', 'context', 'core', script)(require, github, context, core)
  .then(() => console.log(JSON.stringify({ ok: true, calls })),
        (e) => console.log(JSON.stringify({ ok: false, error: e.message, calls })));
"""

BOT = {"login": "github-actions[bot]", "type": "Bot"}
PERSON = {"login": "octocat", "type": "User"}
SAME_REPO = {"number": 7, "head": {"repo": {"fork": False}}}
FORK = {"number": 7, "head": {"repo": {"fork": True}}}


def _run_github_script(tmp_path: Path, **scenario: Any) -> dict[str, Any]:
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed")
    body = tmp_path / "plan.md"
    body.write_text(f"{MARKER}\n### samops plan\n")
    (tmp_path / "script.js").write_text(_step("comment")["with"]["script"])
    (tmp_path / "harness.js").write_text(GITHUB_SCRIPT_HARNESS)
    (tmp_path / "scenario.json").write_text(json.dumps(scenario))
    done = subprocess.run(
        [node, "harness.js", "script.js", "scenario.json"],
        cwd=tmp_path,
        env={**os.environ, "PLAN_BODY": str(body)},
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def _calls(result: dict[str, Any], name: str) -> list[Any]:
    return [params for called, params in result["calls"] if called == name]


def test_github_script_creates_a_comment_when_no_bot_comment_has_the_marker(
    tmp_path: Path,
) -> None:
    comments = [
        {"id": 1, "user": PERSON, "body": f"quoting {MARKER}"},
        {"id": 2, "user": BOT, "body": "another bot's comment"},
    ]
    result = _run_github_script(tmp_path, comments=comments, pull_request=SAME_REPO)
    assert result["ok"], result
    (create,) = _calls(result, "create")
    assert create == {
        "owner": "acme",
        "repo": "manifests",
        "issue_number": 7,
        "body": f"{MARKER}\n### samops plan\n",
    }
    assert not _calls(result, "update")
    assert _calls(result, "summary") == [f"{MARKER}\n### samops plan\n"]


def test_github_script_updates_the_bot_comment_holding_the_marker(tmp_path: Path) -> None:
    comments = [
        {"id": 1, "user": BOT, "body": "unrelated"},
        {"id": 5, "user": BOT, "body": f"{MARKER}\nold plan", "html_url": "u"},
    ]
    result = _run_github_script(tmp_path, comments=comments, pull_request=SAME_REPO)
    assert result["ok"], result
    (update,) = _calls(result, "update")
    assert update["comment_id"] == 5
    assert update["body"].startswith(MARKER)
    assert not _calls(result, "create")


def test_github_script_warns_instead_of_failing_on_a_fork(tmp_path: Path) -> None:
    result = _run_github_script(
        tmp_path, comments=[], pull_request=FORK, fail="create", failStatus=403
    )
    assert result["ok"], result
    (warning,) = _calls(result, "warning")
    assert "fork" in warning


def test_github_script_fails_on_a_refusal_outside_forks(tmp_path: Path) -> None:
    result = _run_github_script(
        tmp_path, comments=[], pull_request=SAME_REPO, fail="create", failStatus=403
    )
    assert not result["ok"]


# --- GitLab CI --------------------------------------------------------------------------------


def test_gitlab_job_runs_only_in_merge_request_pipelines() -> None:
    job = _gitlab_job()
    assert job["rules"] == [{"if": '$CI_PIPELINE_SOURCE == "merge_request_event"'}]
    assert job["image"] == "python:3.12-slim"
    assert job["variables"]["GIT_DEPTH"] == "0"
    assert "git" in job["before_script"][0].split()


def test_gitlab_job_installs_from_git_url_or_version() -> None:
    setup = "\n".join(_gitlab_job()["before_script"])
    assert 'git clone --quiet --depth 1 --branch "$SAMOPS_GIT_REF" "$SAMOPS_GIT_URL"' in setup
    assert 'pip install --quiet "samops==$SAMOPS_VERSION"' in setup
    assert 'pip install --quiet "$SAMOPS_SRC"' in setup


def test_gitlab_job_plans_from_the_diff_base_to_the_commit_and_posts_a_note() -> None:
    job = _gitlab_job()
    script = "\n".join(job["script"])
    command = " ".join(script.replace("\\\n", " ").split())
    assert "git fetch --quiet origin" in job["script"][0]
    assert "$CI_MERGE_REQUEST_TARGET_BRANCH_NAME" in job["script"][0]
    assert (
        'samops plan --repo . --path "$MANIFESTS_PATH" --base "$CI_MERGE_REQUEST_DIFF_BASE_SHA" '
        '--head "$CI_COMMIT_SHA" --format markdown "$@"'
    ) in command
    assert '--fail-on "$SAMOPS_FAIL_ON"' in command
    assert 'python3 "$SAMOPS_SRC/integrations/gitlab/post_note.py" samops-plan.md' in script
    assert 'exit "$status"' in script
    assert job["variables"]["SAMOPS_FAIL_ON"] == "high"


def test_gitlab_job_scripts_are_posix_shell() -> None:
    job = _gitlab_job()
    for command in [*job["before_script"], *job["script"]]:
        subprocess.run(["sh", "-n", "-c", command], check=True)


class FakeGitLab:
    """GitLab's notes endpoints for one merge request, on 127.0.0.1, keeping notes in memory.

    Pages hold at most ``page_size`` notes (GitLab holds up to 100), so that tests reach the
    second page; the token must be ``TOKEN``."""

    def __init__(self, notes: list[dict[str, Any]] | None = None, page_size: int = 3) -> None:
        self.notes = list(notes or [])
        self.page_size = page_size
        self.requests: list[tuple[str, str, Any]] = []
        self.prefix = "/api/v4/projects/42/merge_requests/7/notes"
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.api_url = f"http://127.0.0.1:{self.server.server_address[1]}/api/v4"

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        gitlab = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _answer(self, status: int, payload: Any, headers: dict[str, str]) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for key, value in headers.items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(data)

            def _handle(self) -> None:
                url = urllib.parse.urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                body: Any = json.loads(self.rfile.read(length)) if length else None
                gitlab.requests.append((self.command, url.path, body))
                if self.headers.get("PRIVATE-TOKEN") != TOKEN:
                    self._answer(401, {"message": "401 Unauthorized"}, {})
                elif self.command == "GET" and url.path == gitlab.prefix:
                    self._answer(200, *gitlab.page(urllib.parse.parse_qs(url.query)))
                elif self.command == "POST" and url.path == gitlab.prefix:
                    note = {"id": 100 + len(gitlab.notes), "body": body["body"], "system": False}
                    gitlab.notes.append(note)
                    self._answer(201, note, {})
                elif self.command == "PUT" and url.path.startswith(gitlab.prefix + "/"):
                    note_id = int(url.path.rsplit("/", 1)[1])
                    (note,) = [n for n in gitlab.notes if n["id"] == note_id]
                    note["body"] = body["body"]
                    self._answer(200, note, {})
                else:
                    self._answer(404, {"message": "404 Not found"}, {})

            do_GET = do_POST = do_PUT = _handle

        return Handler

    def page(self, query: dict[str, list[str]]) -> tuple[list[dict[str, Any]], dict[str, str]]:
        number = int(query.get("page", ["1"])[0])
        size = min(int(query.get("per_page", ["20"])[0]), self.page_size)
        notes = self.notes[(number - 1) * size : number * size]
        more = number * size < len(self.notes)
        return notes, {"X-Next-Page": str(number + 1) if more else ""}

    def writes(self) -> list[tuple[str, str, Any]]:
        return [request for request in self.requests if request[0] != "GET"]


@pytest.fixture
def gitlab() -> Iterator[FakeGitLab]:
    fake = FakeGitLab()
    thread = threading.Thread(target=fake.server.serve_forever, daemon=True)
    thread.start()
    yield fake
    fake.server.shutdown()
    fake.server.server_close()
    thread.join(timeout=5)


def _gitlab_env(
    tmp_path: Path, gitlab: FakeGitLab, token: str = TOKEN, **extra: str
) -> dict[str, str]:
    return _env(
        tmp_path,
        CI_API_V4_URL=gitlab.api_url,
        CI_PROJECT_ID="42",
        CI_MERGE_REQUEST_IID="7",
        SAMOPS_GITLAB_TOKEN=token,
        **extra,
    )


def _post_note(
    tmp_path: Path, gitlab: FakeGitLab, body: str, token: str = TOKEN
) -> subprocess.CompletedProcess[str]:
    (tmp_path / "plan.md").write_text(body)
    return subprocess.run(
        [sys.executable, str(POST_NOTE), str(tmp_path / "plan.md")],
        env=_gitlab_env(tmp_path, gitlab, token),
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_post_note_creates_a_note_when_none_has_the_marker(
    tmp_path: Path, gitlab: FakeGitLab
) -> None:
    gitlab.notes = [
        {"id": 1, "body": "looks good", "system": False},
        {"id": 2, "body": f"changed the description {MARKER}", "system": True},
    ]
    done = _post_note(tmp_path, gitlab, f"{MARKER}\nplan")
    assert done.returncode == 0, done.stderr
    assert gitlab.writes() == [("POST", gitlab.prefix, {"body": f"{MARKER}\nplan"})]
    assert "created note 102" in done.stdout


def test_post_note_updates_the_marked_note_on_a_later_page(
    tmp_path: Path, gitlab: FakeGitLab
) -> None:
    gitlab.notes = [{"id": n, "body": f"comment {n}", "system": False} for n in range(1, 5)]
    gitlab.notes.append({"id": 5, "body": f"{MARKER}\nold plan", "system": False})
    done = _post_note(tmp_path, gitlab, f"{MARKER}\nnew plan")
    assert done.returncode == 0, done.stderr
    assert gitlab.writes() == [("PUT", f"{gitlab.prefix}/5", {"body": f"{MARKER}\nnew plan"})]
    assert [r[0] for r in gitlab.requests].count("GET") == 2


def test_post_note_marks_a_body_that_lacks_the_marker(tmp_path: Path, gitlab: FakeGitLab) -> None:
    done = _post_note(tmp_path, gitlab, "plan")
    assert done.returncode == 0, done.stderr
    assert gitlab.notes[0]["body"] == f"{MARKER}\nplan"


def test_post_note_explains_a_refused_token_without_printing_it(
    tmp_path: Path, gitlab: FakeGitLab
) -> None:
    done = _post_note(tmp_path, gitlab, MARKER, token="glpat-wrong-token")
    assert done.returncode == 1
    assert "GitLab answered 401" in done.stderr
    assert "SAMOPS_GITLAB_TOKEN" in done.stderr
    assert "glpat-wrong-token" not in done.stderr + done.stdout


def test_post_note_without_a_token_says_which_variable_to_set(
    tmp_path: Path, gitlab: FakeGitLab
) -> None:
    done = _post_note(tmp_path, gitlab, MARKER, token="")
    assert done.returncode == 1
    assert "SAMOPS_GITLAB_TOKEN not set" in done.stderr
    assert gitlab.requests == []


def _run_gitlab_script(
    tmp_path: Path, gitlab: FakeGitLab, pull: PullRequest
) -> subprocess.CompletedProcess[str]:
    variables = _gitlab_job()["variables"]
    env = _gitlab_env(
        tmp_path,
        gitlab,
        MANIFESTS_PATH=variables["MANIFESTS_PATH"],
        SAMOPS_FAIL_ON=variables["SAMOPS_FAIL_ON"],
        SAMOPS_SRC=str(PROJECT_ROOT),
        CI_MERGE_REQUEST_TARGET_BRANCH_NAME="main",
        CI_MERGE_REQUEST_DIFF_BASE_SHA=pull.merge_base,
        CI_COMMIT_SHA=pull.head,
        CI_JOB_URL="https://gitlab.example/acme/manifests/-/jobs/1",
    )
    # The runner runs the script's entries in one bash with errexit and pipefail.
    return subprocess.run(
        ["bash", "-e", "-o", "pipefail", "-c", "\n".join(_gitlab_job()["script"])],
        cwd=pull.clone,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_gitlab_script_posts_the_plan_and_exits_3_on_a_high_flag(
    tmp_path: Path, gitlab: FakeGitLab
) -> None:
    pull = PullRequest(tmp_path, PUBLIC_CLIENT)
    done = _run_gitlab_script(tmp_path, gitlab, pull)
    assert done.returncode == 3, done.stderr
    ((method, _, body),) = gitlab.writes()
    assert method == "POST"
    assert body["body"].startswith(MARKER)
    assert "client-public" in body["body"]
    assert "merged_later" not in body["body"]
    assert (pull.clone / "samops-plan.md").read_text() == body["body"]


def test_gitlab_script_updates_its_note_and_exits_1_on_an_invalid_head(
    tmp_path: Path, gitlab: FakeGitLab
) -> None:
    gitlab.notes = [{"id": 3, "body": f"{MARKER}\nan earlier plan", "system": False}]
    pull = PullRequest(tmp_path, UNKNOWN_KEY)
    done = _run_gitlab_script(tmp_path, gitlab, pull)
    assert done.returncode == 1, done.stderr
    ((method, path, body),) = gitlab.writes()
    assert (method, path) == ("PUT", f"{gitlab.prefix}/3")
    assert "bogusKey" in body["body"]
    assert TOKEN not in done.stdout + done.stderr


# --- pre-commit -------------------------------------------------------------------------------


def test_pre_commit_hooks_validate_the_manifests_folder_as_a_whole() -> None:
    hooks = _hooks()
    assert set(hooks) == {"samops-validate", "samops-validate-strict"}
    assert hooks["samops-validate"]["entry"] == "samops validate"
    assert hooks["samops-validate-strict"]["entry"] == "samops validate --strict"
    for hook in hooks.values():
        assert hook["language"] == "python"
        assert hook["pass_filenames"] is False
        assert hook["args"] == ["manifests"]
        files = re.compile(hook["files"])
        assert files.search("manifests/clients/support.yaml")
        assert files.search("manifests/keys/key.yml")
        assert not files.search("manifests/README.md")
        assert not files.search("docs/example.yaml")


@pytest.mark.parametrize(
    ("hook_id", "edit", "expected"),
    [
        pytest.param("samops-validate", None, 0, id="valid"),
        pytest.param("samops-validate", UNKNOWN_KEY, 1, id="invalid"),
        pytest.param("samops-validate-strict", IGNORED_KEY, 1, id="warning-strict"),
    ],
)
def test_pre_commit_hook_entry_exits_with_the_validation_result(
    git_repo: GitRepo, hook_id: str, edit: tuple[str, str, str] | None, expected: int
) -> None:
    shutil.copytree(MANIFESTS, git_repo.root / "manifests")
    if edit is not None:
        _edit(git_repo.root, edit)
    git_repo.commit("manifests")
    hook = _hooks()[hook_id]
    program, *arguments = shlex.split(hook["entry"])
    done = subprocess.run(
        [str(VENV_BIN / program), *arguments, *hook["args"]],
        cwd=git_repo.root,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == expected, done.stdout + done.stderr
    if edit is not None:
        assert "clients/lab.yaml:17:" in done.stdout + done.stderr


# --- docs -------------------------------------------------------------------------------------


def test_review_doc_pre_commit_snippet_names_the_hooks_defined_here() -> None:
    section = REVIEW_DOC.read_text().split("\n## Integrations\n", 1)[1]
    snippets = re.findall(r"```yaml\n(.*?)```", section, flags=re.DOTALL)
    configs = [yaml.safe_load(s) for s in snippets if s.startswith("repos:")]
    assert configs, "docs/review.md shows no .pre-commit-config.yaml"
    ids = {hook["id"] for config in configs for repo in config["repos"] for hook in repo["hooks"]}
    assert ids <= set(_hooks())
