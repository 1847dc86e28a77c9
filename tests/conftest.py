"""Shared test helpers: real git repositories in temporary folders, and validation shortcuts."""

from __future__ import annotations

import os
import subprocess
import textwrap
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import sqlalchemy.exc
from sqlalchemy import Engine, create_engine
from sqlalchemy.engine import make_url

from reconciler.sam.diagnostics import Diagnostic
from reconciler.sam.load import LoadOptions
from reconciler.sam.revision import Revision, validate_files
from reconciler.source import SourceFile, blob_sha

PROJECT_ROOT = Path(__file__).resolve().parents[1]
MANIFESTS = PROJECT_ROOT / "manifests"
SHARED = PROJECT_ROOT.parent / "shared"


def shared_corpus(name: str) -> Path:
    """A folder of ``../shared/``, the extra corpus beside our checkouts and CI's (never in a
    user's clone). Tests that read it skip, with the reason, when it is absent; under
    ``CI=true`` they fail instead, so CI never passes by skipping them."""
    folder = SHARED / name
    if folder.is_dir():
        return folder
    reason = f"{folder} is absent: the shared corpus is beside our checkouts, not in a clone"
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason}; under CI=true it must be there")
    pytest.skip(reason)


GIT_ENV = {
    "GIT_AUTHOR_NAME": "samops tests",
    "GIT_AUTHOR_EMAIL": "tests@samops.invalid",
    "GIT_COMMITTER_NAME": "samops tests",
    "GIT_COMMITTER_EMAIL": "tests@samops.invalid",
    "GIT_CONFIG_NOSYSTEM": "1",
}


class GitRepo:
    """A real repository on disk, driven with the real ``git`` command."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.git("init", "--quiet", "--initial-branch=main")

    def git(self, *args: str) -> str:
        env = {**os.environ, **GIT_ENV, "HOME": str(self.root)}
        done = subprocess.run(
            ["git", *args], cwd=self.root, env=env, check=True, capture_output=True, text=True
        )
        return done.stdout.strip()

    def write(self, path: str, text: str) -> Path:
        target = self.root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(textwrap.dedent(text))
        return target

    def commit(self, message: str = "change") -> str:
        self.git("add", "--all")
        self.git("commit", "--quiet", "--allow-empty", "-m", message)
        return self.git("rev-parse", "HEAD")


@pytest.fixture
def git_repo(tmp_path: Path) -> GitRepo:
    return GitRepo(tmp_path / "repo")


def validate_text(
    text: str,
    file: str = "m.yaml",
    *,
    allow_plaintext_secrets: bool = False,
    check_references: bool = True,
) -> Revision:
    """Validate one file's text (dedented) as a whole revision."""
    data = textwrap.dedent(text).encode()
    return validate_files(
        "text:" + blob_sha(data)[:12],
        [SourceFile(file, blob_sha(data), data)],
        options=LoadOptions(allow_plaintext_secrets=allow_plaintext_secrets),
        check_references=check_references,
    )


def rendered(diagnostics: list[Diagnostic]) -> list[str]:
    """``file:line:col: path: severity: message`` lines, without hints, for exact assertions."""
    return [d.render().split("\n")[0] for d in diagnostics]


# --- databases ------------------------------------------------------------------------------

POSTGRES_ADMIN_URL = os.environ.get(
    "SAMOPS_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


def _postgres_admin() -> Engine | None:
    """An engine on the test server, or None when none is reachable (a failure under CI)."""
    engine = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect():
            return engine
    except sqlalchemy.exc.OperationalError as exc:
        engine.dispose()
        if os.environ.get("CI") == "true":
            pytest.fail(f"PostgreSQL must be reachable under CI=true: {exc.orig}")
        return None


@pytest.fixture(scope="session")
def postgres_admin() -> Iterator[Engine | None]:
    engine = _postgres_admin()
    yield engine
    if engine is not None:
        engine.dispose()


@contextmanager
def fresh_postgres_database(admin: Engine) -> Iterator[str]:
    """A new, empty PostgreSQL database (dropped afterwards); yields its URL."""
    name = f"samops_test_{uuid.uuid4().hex[:12]}"
    with admin.connect() as connection:
        connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
    try:
        yield make_url(POSTGRES_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(
    request: pytest.FixtureRequest, tmp_path: Path, postgres_admin: Engine | None
) -> Iterator[str]:
    """A fresh, empty database of each kind: a SQLite file, or a new PostgreSQL database."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'samops.sqlite3'}"
        return
    if postgres_admin is None:
        pytest.skip("PostgreSQL is not reachable on 127.0.0.1:5432")
    with fresh_postgres_database(postgres_admin) as url:
        yield url


@pytest.fixture
def postgres_url(postgres_admin: Engine | None) -> Iterator[str]:
    """A fresh PostgreSQL database, for behaviour only PostgreSQL has."""
    if postgres_admin is None:
        pytest.skip("PostgreSQL is not reachable on 127.0.0.1:5432")
    with fresh_postgres_database(postgres_admin) as url:
        yield url


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    from reconciler.store.db import open_database

    engine = open_database(database_url)
    yield engine
    engine.dispose()
