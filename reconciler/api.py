"""What the ``serve`` package may use of the reconciler, named in one place.

The public API between the two halves of samops. ``serve`` imports ``reconciler.api``,
``reconciler.errors``, ``reconciler.sam`` (the format) and ``reconciler.store`` (the database),
and nothing else of ``reconciler`` (``tests/test_layout.py`` holds it to that); ``reconciler``
never imports ``serve``. A name added here is a promise to keep it working for the server.
"""

from __future__ import annotations

from reconciler.apikeys import digest_of, digests_match, presented_digests
from reconciler.apply import GENERATION_CHANNEL
from reconciler.cli.common import (
    PLAINTEXT_SECRETS_OPTION,
    SUBPATH_OPTION,
    database_options,
    env_option,
    fail,
    source_option,
)
from reconciler.daemon import Daemon
from reconciler.desired import Identity, ResourceState, desired_state
from reconciler.errors import SealingError
from reconciler.follow import (
    DirectoryFollower,
    Follower,
    LocalGitFollower,
    RemoteGitFollower,
    clone_dir_for,
)
from reconciler.leader import leader_lock_for
from reconciler.logs import Throttled, configure_logging
from reconciler.metrics import ReconcilerMetrics
from reconciler.outbound.dispatch import Outbound
from reconciler.outbound.events import Event
from reconciler.outbound.settings import OutboundSettingsError, outbound_targets
from reconciler.refs import LocalRefReader, RefError, RefReader, Validator, ref_reader_for
from reconciler.report import describe, get_table
from reconciler.review import review_revisions
from reconciler.review_render import review_to_json
from reconciler.sealing import unseal
from reconciler.settings import WHOLE_PASS_CHILD_FILES, DaemonSettings, setting, unknown_variables
from reconciler.whole import start_child_server

__all__ = [
    "GENERATION_CHANNEL",
    "PLAINTEXT_SECRETS_OPTION",
    "SUBPATH_OPTION",
    "WHOLE_PASS_CHILD_FILES",
    "Daemon",
    "DaemonSettings",
    "DirectoryFollower",
    "Event",
    "Follower",
    "Identity",
    "LocalGitFollower",
    "LocalRefReader",
    "Outbound",
    "OutboundSettingsError",
    "ReconcilerMetrics",
    "RefError",
    "RefReader",
    "RemoteGitFollower",
    "ResourceState",
    "SealingError",
    "Throttled",
    "Validator",
    "clone_dir_for",
    "configure_logging",
    "database_options",
    "describe",
    "desired_state",
    "digest_of",
    "digests_match",
    "env_option",
    "fail",
    "get_table",
    "leader_lock_for",
    "outbound_targets",
    "presented_digests",
    "ref_reader_for",
    "review_revisions",
    "review_to_json",
    "setting",
    "source_option",
    "start_child_server",
    "unknown_variables",
    "unseal",
]
