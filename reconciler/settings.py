"""Every setting samops reads from the environment, in one table; the daemon's settings.

Entry-point support. The commands name their options and the ``SAMOPS_*`` variable of each
(click reads them); a few settings have no option and are read where they are used, through
the names listed here. ``VARIABLES`` is the one list of them all, with the default and the
unit of each; ``tests/test_settings.py`` checks that every variable the code reads is listed
and documented, and ``unknown_variables`` reports, at the start of ``samops run`` and
``samops serve``, a ``SAMOPS_*`` variable that samops does not read (a typo, or a setting of
another version), with the nearest known name.

The server's settings objects are in ``serve/settings.py``; the format's limits in
``reconciler/sam/load.py`` (``LoadOptions``) and ``reconciler/sam/yamlread.py``
(``ReadLimits``).
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from reconciler.sam.load import LoadOptions


@dataclass(frozen=True, slots=True)
class Variable:
    name: str
    default: str
    meaning: str


VARIABLES: tuple[Variable, ...] = (
    Variable("SAMOPS_DATABASE_URL", "SQLite in the data directory", "the state (every command)"),
    Variable("SAMOPS_DATA_DIR", "./data", "SQLite database, clones of remotes, lock file"),
    Variable("SAMOPS_SOURCE", "default", "name of the manifest source (plan, apply, run)"),
    Variable("SAMOPS_REPO", "unset", "local repository to follow (run)"),
    Variable("SAMOPS_URL", "unset", "remote repository to follow (run)"),
    Variable("SAMOPS_REF", "HEAD", "ref to follow; with a URL, the branch"),
    Variable("SAMOPS_PATH", "the whole tree", "folder of the manifests in the repository"),
    Variable("SAMOPS_POLL_INTERVAL", "60 s", "seconds between fetches of a remote"),
    Variable("SAMOPS_WEBHOOK_SECRET", "off", "enables POST /hooks/git"),
    Variable("SAMOPS_ALLOW_PLAINTEXT_SECRETS", "off", "accept plaintext Secret values"),
    Variable("SAMOPS_HOST", "127.0.0.1", "address to listen on"),
    Variable("SAMOPS_PORT", "8080", "port to listen on"),
    Variable("SAMOPS_TLS_CERT", "unset: plain HTTP", "PEM certificate chain: serve HTTPS"),
    Variable("SAMOPS_TLS_KEY", "unset", "PEM private key of that certificate"),
    Variable("SAMOPS_TLS_RELOAD_INTERVAL", "60 s", "looks at the TLS files for a renewal"),
    Variable("SAMOPS_WORKERS", "1", "server processes sharing the port"),
    Variable("SAMOPS_KEEPALIVE_TIMEOUT", "15 s", "idle time of a connection"),
    Variable("SAMOPS_BODY_TIMEOUT", "30 s", "time a request body may take to arrive"),
    Variable("SAMOPS_MAX_CONNECTIONS", "1000", "connections open at once, per process"),
    Variable("SAMOPS_MAX_TOOL_ROUNDS", "4", "tool rounds per chat turn"),
    Variable("SAMOPS_ACCOUNT_NUMBER", "0000-0000-0000", "account of host-based prompt routes"),
    Variable("SAMOPS_API_DOMAIN", "localhost", "domain of host-based prompt routes"),
    Variable("SAMOPS_ADMIN_KEY_DIGEST", "off", "digest of the admin key"),
    Variable("SAMOPS_VIEWER_KEY_DIGEST", "off", "digest of the console's read-only key"),
    Variable("SAMOPS_CONSOLE", "on", "the web console at /"),
    Variable("SAMOPS_COMMIT_STATUS", "off", "github, gitlab or gitea: post commit statuses (run)"),
    Variable("SAMOPS_COMMIT_STATUS_REPO", "the remote's path", "owner/name that statuses go to"),
    Variable("SAMOPS_COMMIT_STATUS_API", "from the remote's host", "the git host's API base URL"),
    Variable("SAMOPS_GIT_HOST_TOKEN", "unset", "token that may post commit statuses (a secret)"),
    Variable("SAMOPS_GIT_HOST_TOKEN_FILE", "unset", "file holding that token"),
    Variable("SAMOPS_NOTIFY_WEBHOOKS", "none", "generic webhook URLs, comma-separated"),
    Variable("SAMOPS_NOTIFY_WEBHOOK_SECRET", "unset", "HMAC key of X-Samops-Signature"),
    Variable("SAMOPS_NOTIFY_WEBHOOK_SECRET_FILE", "unset", "file holding that key"),
    Variable("SAMOPS_NOTIFY_SLACK_URL", "unset", "Slack-compatible incoming webhook (a secret)"),
    Variable("SAMOPS_NOTIFY_SLACK_URL_FILE", "unset", "file holding that URL"),
    Variable("SAMOPS_CONSOLE_URL", "the listening address", "the console's address, for links"),
    Variable("SAMOPS_PROTECT", "none", "operational endpoints that need the admin key"),
    Variable("SAMOPS_LOG_FORMAT", "text", "text or json"),
    Variable("SAMOPS_LOG_LEVEL", "info", "debug, info, warning, error"),
    Variable("SAMOPS_EVENT_LOOP", "auto", "auto, uvloop or asyncio"),
    Variable("SAMOPS_SECRETS_ENV", "none", "variables a Secret's valueFrom.env may read"),
    Variable("SAMOPS_SECRETS_FILE_DIRS", "none", "folders a Secret's valueFrom.file may read"),
    Variable("SAMOPS_SECRETS_PRIVATE_KEY_FILE", "unset", "opens sealed Secret values"),
    Variable("SAMOPS_SECRETS_PUBLIC_KEY", "unset", "seals values (samops secrets encrypt)"),
    Variable("SAMOPS_WORKER", "set by samops", "a worker process's settings (internal)"),
)
"""Every ``SAMOPS_*`` variable samops reads, with its default (and unit)."""

UPSTREAM_VARIABLES: tuple[Variable, ...] = (
    Variable("OPENAI_API_KEY", "unset: the offline demo model", "key of the built-in provider"),
    Variable("OPENAI_BASE_URL", "OpenAI's public API", "URL of the built-in provider"),
)
"""The built-in ``openai`` provider's variables, named as the ``openai`` SDK names them."""

PIPELINE_VARIABLES = frozenset(
    {"SAMOPS_GIT_URL", "SAMOPS_GIT_REF", "SAMOPS_VERSION", "SAMOPS_FAIL_ON", "SAMOPS_GITLAB_TOKEN"}
)
"""Variables of the review pipeline templates (docs/review.md), read by the CI job."""

KNOWN = frozenset(v.name for v in VARIABLES) | PIPELINE_VARIABLES
READABLE = frozenset(v.name for v in (*VARIABLES, *UPSTREAM_VARIABLES))


def setting(name: str, default: str | None = None) -> str | None:
    """The environment's value of the setting ``name`` (listed above), else ``default``: the
    one way samops reads a setting that no command-line option carries."""
    if name not in READABLE:
        raise LookupError(f"{name} is not a listed setting: add it to VARIABLES first")
    return os.environ.get(name, default)


def unknown_variables(environ: Mapping[str, str]) -> list[str]:
    """A sentence for each ``SAMOPS_*`` variable of ``environ`` that samops does not read."""
    found = []
    for name in sorted(n for n in environ if n.startswith("SAMOPS_") and n not in KNOWN):
        close = difflib.get_close_matches(name, sorted(KNOWN), n=1)
        hint = f"did you mean {close[0]}?" if close else "docs/daemon.md lists the settings"
        found.append(f"{name} is set but is not a samops setting (hint: {hint})")
    return found


WHOLE_PASS_CHILD_FILES = 1_000
"""``samops run``'s ``whole_pass_child_files``: below it a whole pass peaks at tens of MB."""


@dataclass(frozen=True, slots=True)
class DaemonSettings:
    """How the daemon paces itself. Every duration is in seconds."""

    source_name: str = "default"
    """Name of the followed source: only its rows are pruned; leadership is per source."""
    debounce_seconds: float = 0.01
    """Wait after an isolated wake-up before its pass; each further event within it restarts
    it (one commit moves a ref with several file-system events)."""
    burst_quiet_seconds: float = 0.1
    """In a burst (wake-ups while a pass runs or a burst settles), wait for this long without
    events before the next pass."""
    burst_max_wait_seconds: float = 1.0
    """Longest wait from the first unserved wake-up to its pass, even if events never stop."""
    poll_interval_seconds: float = 60.0
    """Fetch period for a remote repository (webhooks make it sooner)."""
    poll_jitter: float = 0.1
    """Random spread of the poll period, as a fraction of it (avoids herds of fetches)."""
    retry_initial_seconds: float = 0.5
    """Wait before retrying a pass that failed transiently; doubles per failure (±20 %)."""
    retry_max_seconds: float = 60.0
    """Cap of the retry wait; also of the interval between outage warnings."""
    control_poll_seconds: float = 1.0
    """Period of the control check (leadership, suspension, reconcile requests) without
    events; also how often an unreachable database is tried again."""
    allow_empty: bool = False
    """Apply a revision that deletes every client (refused otherwise)."""
    whole_pass_child_files: int | None = None
    """A whole-revision pass (a start, an invalid commit) over this many files or more runs in
    a child process, so that its parse peak never stays in the serving process
    (``whole.py``; ``samops run`` sets ``WHOLE_PASS_CHILD_FILES``); None runs every pass in
    the daemon's process. A program that sets it must guard its main module (``if __name__ ==
    "__main__":``), as multiprocessing requires."""
    load_options: LoadOptions = field(default_factory=LoadOptions)
    """The validation policy (plaintext secrets, secret access)."""
