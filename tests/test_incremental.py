"""Passes that cost what changed (``reconciler/incremental.py``) agree with whole ones.

A random sequence of commits (edits, file renames, documents moved between files, deletions,
new resources, resources renamed with or without their referrers, plugins changing kind,
keys deactivated or given another key's digest, duplicate names, broken YAML, reverts) lands
in a real git repository. After each commit, three appliers look at it:

- the daemon under test, which remembers what it applied and passes by what changed;
- a daemon with no memory on a second database kept in step: the whole-revision path;
- a fresh database given the commit from scratch (when it is valid).

The outcome and the plan of the first two must be equal, the rows of all three equal, and a
serving state that follows the incremental database (reading only the rows each generation
changed, as every replica does) must serve what a serving state compiled afresh from the
fresh database serves; most valid commits must have gone the incremental way (so the
comparison means something).
"""

from __future__ import annotations

import asyncio
import copy
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from prometheus_client import CollectorRegistry
from sqlalchemy import Engine

from reconciler.apikeys import digest_of
from reconciler.daemon import Daemon
from reconciler.follow import LocalGitFollower
from reconciler.leader import leader_lock_for
from reconciler.metrics import ReconcilerMetrics
from reconciler.store.db import open_database, reading
from reconciler.store.read import read_actual
from serve.snapshot import ServingState
from tests.conftest import GitRepo, fresh_postgres_database

Document = dict[str, Any]
STEPS = 40


def _provider(name: str) -> Document:
    return {
        "apiVersion": "smarter.sh/v1",
        "kind": "Provider",
        "metadata": {"name": name, "description": f"Provider {name}"},
        "spec": {"provider": {"name": name, "base_url": f"http://127.0.0.1:9/{name}/v1"}},
    }


def _secret(name: str) -> Document:
    return {
        "apiVersion": "smarter.sh/v1",
        "kind": "Secret",
        "metadata": {"name": name, "description": f"Secret {name}"},
        "spec": {"config": {"valueFrom": {"env": name.upper()}}},
    }


def _connection(name: str, secret: str) -> Document:
    return {
        "apiVersion": "smarter.sh/v1",
        "kind": "ApiConnection",
        "metadata": {"name": name, "description": f"Connection {name}"},
        "spec": {
            "connection": {
                "baseUrl": "http://127.0.0.1:9/api/",
                "authMethod": "token",
                "apiKey": secret,
            }
        },
    }


def _static_plugin(name: str, provider: str) -> Document:
    return {
        "apiVersion": "smarter.sh/v1",
        "kind": "Plugin",
        "metadata": {"name": name, "pluginClass": "static", "description": f"Plugin {name}"},
        "spec": {
            "selector": {"directive": "search_terms", "searchTerms": [name]},
            "prompt": {"provider": provider, "systemRole": f"Use {name}."},
            "data": {"staticData": {"fact": name}},
        },
    }


def _api_plugin(name: str, connection: str) -> Document:
    return {
        "apiVersion": "smarter.sh/v1",
        "kind": "ApiPlugin",
        "metadata": {"name": name, "pluginClass": "api", "description": f"Plugin {name}"},
        "spec": {
            "selector": {"directive": "search_terms", "searchTerms": [name]},
            "prompt": {"provider": "openai", "systemRole": f"Call {name}."},
            "connection": connection,
            "apiData": {"endpoint": "/things/", "method": "GET"},
        },
    }


def _token(name: str, key: str, active: bool = True) -> Document:
    return {
        "apiVersion": "smarter.sh/v1",
        "kind": "SmarterAuthToken",
        "metadata": {"name": name, "description": f"Key {name}"},
        "spec": {"config": {"isActive": active, "digest": [digest_of(key)]}},
    }


def _client(name: str, provider: str, plugins: list[str], key: str | None) -> Document:
    spec: dict[str, Any] = {
        "config": {"provider": provider, "defaultSystemRole": f"You are {name}."},
        "plugins": plugins,
        "functions": ["calculator"],
    }
    if key is not None:
        spec["apiKey"] = key
    return {
        "apiVersion": "smarter.sh/v1",
        "kind": "LLMClient",
        "metadata": {"name": name, "description": f"Client {name}"},
        "spec": spec,
    }


class World:
    """The repository's files as documents; random changes to them."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.files: dict[str, list[Document]] = {}
        self.broken: dict[str, str] = {}  # path -> text that is not valid YAML
        self.counter = 0
        for name in ("p0", "p1"):
            self.files[f"providers/{name}.yaml"] = [_provider(name)]
        for name in ("s0", "s1"):
            self.files[f"secrets/{name}.yaml"] = [_secret(name)]
        self.files["connections/c0.yaml"] = [_connection("c0", "s0")]
        for n in range(4):
            self.files[f"plugins/g{n}.yaml"] = [
                _static_plugin(f"g{n}", rng.choice(["p0", "openai"]))
            ]
        self.files["plugins/a0.yaml"] = [_api_plugin("a0", "c0")]
        self.files["keys/t0.yaml"] = [_token("t0", "key-0")]
        self.files["keys/t1.yaml"] = [_token("t1", "key-1")]
        for n in range(5):
            plugins = rng.sample(["g0", "g1", "g2", "g3", "a0"], 2)
            key = rng.choice([None, "t0", "t1"])
            self.files[f"clients/c{n}.yaml"] = [_client(f"c{n}", "p1", plugins, key)]

    def documents(self, kind: str | None = None) -> Iterator[tuple[str, Document]]:
        for path, documents in self.files.items():
            for document in documents:
                if kind is None or document["kind"] == kind:
                    yield path, document

    def names(self, *kinds: str) -> list[str]:
        return sorted(d["metadata"]["name"] for k in kinds for _, d in self.documents(k))

    def write(self, root: Path) -> None:
        manifests = root / "manifests"
        for old in manifests.rglob("*.yaml") if manifests.exists() else []:
            old.unlink()
        for path, documents in self.files.items():
            target = manifests / path
            target.parent.mkdir(parents=True, exist_ok=True)
            if path in self.broken:
                target.write_text(self.broken[path])
            elif documents:
                target.write_text(yaml.safe_dump_all(documents, sort_keys=False))

    def fresh_name(self, prefix: str) -> str:
        self.counter += 1
        return f"{prefix}{self.counter}"

    # --- changes ------------------------------------------------------------------------------

    def change(self) -> str:
        moves = [
            self.edit_prompt,
            self.set_plugins,
            self.rename_file,
            self.move_document,
            self.delete_file,
            self.add_client,
            self.add_plugin,
            self.rename_resource,
            self.change_key,
            self.duplicate,
            self.break_yaml,
            self.retype_plugin,
            self.switch_provider,
            self.delete_every_client,
        ]
        self.broken = {p: t for p, t in self.broken.items() if self.rng.random() < 0.3}
        return self.rng.choice(moves)()

    def _pick(self, kind: str) -> tuple[str, Document] | None:
        found = list(self.documents(kind))
        return self.rng.choice(found) if found else None

    def edit_prompt(self) -> str:
        picked = self._pick("LLMClient")
        if picked is None:
            return self.add_client()
        picked[1]["spec"]["config"]["defaultSystemRole"] += f" Edit {self.counter}."
        self.counter += 1
        return f"edit the prompt of {picked[1]['metadata']['name']}"

    def set_plugins(self) -> str:
        picked = self._pick("LLMClient")
        if picked is None:
            return self.add_client()
        plugins = self.names("Plugin", "ApiPlugin")
        chosen = self.rng.sample(plugins, min(len(plugins), self.rng.randint(0, 3)))
        if self.rng.random() < 0.15:
            chosen.append("no_such_plugin")
        picked[1]["spec"]["plugins"] = chosen
        return f"plugins of {picked[1]['metadata']['name']}: {chosen}"

    def rename_file(self) -> str:
        path = self.rng.choice(sorted(self.files))
        folder = path.rsplit("/", 1)[0]
        new = f"{folder}/{self.fresh_name('renamed')}.yaml"
        self.files[new] = self.files.pop(path)
        if path in self.broken:
            self.broken[new] = self.broken.pop(path)
        return f"rename {path} to {new}"

    def move_document(self) -> str:
        sources = [p for p, d in self.files.items() if d and p not in self.broken]
        source = self.rng.choice(sorted(sources))
        target = self.rng.choice(sorted(p for p in self.files if p not in self.broken))
        document = self.files[source].pop(self.rng.randrange(len(self.files[source])))
        self.files[target].append(document)
        if not self.files[source]:
            del self.files[source]
        return f"move {document['metadata']['name']} from {source} to {target}"

    def delete_file(self) -> str:
        path = self.rng.choice(sorted(self.files))
        del self.files[path]
        self.broken.pop(path, None)
        return f"delete {path}"

    def add_client(self) -> str:
        name = self.fresh_name("client")
        plugins = (
            self.rng.sample(self.names("Plugin", "ApiPlugin"), 1) if self.names("Plugin") else []
        )
        key = self.rng.choice([None, *self.names("SmarterAuthToken")])
        self.files[f"clients/{name}.yaml"] = [_client(name, "openai", plugins, key)]
        return f"add {name}"

    def add_plugin(self) -> str:
        name = self.fresh_name("plugin")
        self.files[f"plugins/{name}.yaml"] = [_static_plugin(name, "openai")]
        return f"add {name}"

    def rename_resource(self) -> str:
        kind = self.rng.choice(["Plugin", "Provider", "SmarterAuthToken"])
        picked = self._pick(kind)
        if picked is None:
            return self.add_plugin()
        old = picked[1]["metadata"]["name"]
        new = self.fresh_name(old.rstrip("0123456789") or "r")
        picked[1]["metadata"]["name"] = new
        follow = self.rng.random() < 0.6
        if follow:
            for _, client in self.documents("LLMClient"):
                spec = client["spec"]
                spec["plugins"] = [new if p == old else p for p in spec["plugins"]]
                if spec.get("apiKey") == old:
                    spec["apiKey"] = new
                if spec["config"]["provider"] == old:
                    spec["config"]["provider"] = new
            for _, plugin in self.documents("Plugin"):
                if plugin["spec"]["prompt"]["provider"] == old:
                    plugin["spec"]["prompt"]["provider"] = new
        return f"rename {kind} {old} to {new}" + (" and its referrers" if follow else "")

    def change_key(self) -> str:
        picked = self._pick("SmarterAuthToken")
        if picked is None:
            return self.add_client()
        config = picked[1]["spec"]["config"]
        roll = self.rng.random()
        if roll < 0.4:
            config["isActive"] = not config["isActive"]
            return f"key {picked[1]['metadata']['name']} active: {config['isActive']}"
        if roll < 0.8:
            config["digest"] = [digest_of(f"key-{self.fresh_name('k')}")]
            return f"rotate {picked[1]['metadata']['name']}"
        other = self._pick("SmarterAuthToken")
        assert other is not None
        config["digest"] = list(other[1]["spec"]["config"]["digest"])
        return f"{picked[1]['metadata']['name']} takes the digest of {other[1]['metadata']['name']}"

    def duplicate(self) -> str:
        picked = self._pick(self.rng.choice(["LLMClient", "Plugin"]))
        if picked is None:
            return self.add_plugin()
        self.files[f"dupes/{self.fresh_name('dupe')}.yaml"] = [copy.deepcopy(picked[1])]
        return f"duplicate {picked[1]['metadata']['name']}"

    def break_yaml(self) -> str:
        path = self.rng.choice(sorted(self.files))
        self.broken[path] = "kind: [unclosed\n"
        return f"break {path}"

    def retype_plugin(self) -> str:
        picked = self._pick(self.rng.choice(["Plugin", "ApiPlugin"]))
        if picked is None:
            return self.add_plugin()
        path, document = picked
        name = document["metadata"]["name"]
        retyped = (
            _api_plugin(name, "c0")
            if document["kind"] == "Plugin"
            else _static_plugin(name, "openai")
        )
        self.files[path] = [retyped if d is document else d for d in self.files[path]]
        return f"{name} becomes a {retyped['kind']}"

    def delete_every_client(self) -> str:
        for path in list(self.files):
            self.files[path] = [d for d in self.files[path] if d["kind"] != "LLMClient"]
            if not self.files[path]:
                del self.files[path]
        return "delete every client (refused)"

    def switch_provider(self) -> str:
        picked = self._pick("LLMClient")
        if picked is None:
            return self.add_client()
        provider = self.rng.choice(["openai", *self.names("Provider")])
        picked[1]["spec"]["config"]["provider"] = provider
        return f"{picked[1]['metadata']['name']} uses {provider}"


def _daemon(engine: Engine, repo: Path) -> Daemon:
    return Daemon(
        engine=engine,
        follower=LocalGitFollower(repo, path="manifests"),
        leader=leader_lock_for(engine, "default"),
        metrics=ReconcilerMetrics(CollectorRegistry()),
    )


def _rows(engine: Engine) -> dict[Any, Any]:
    with reading(engine) as connection:
        actual = read_actual(connection)
        connection.rollback()
    return {i: (s.file, s.fields) for i, s in actual.items()}


class Serving:
    """A serving state on a database, loaded again after every commit, as a replica's is."""

    def __init__(self, engine: Engine) -> None:
        self.loop = asyncio.new_event_loop()
        self.http = self.loop.run_until_complete(_session())
        self.state = ServingState(engine, self.http)

    def load(self) -> dict[str, Any]:
        """What the snapshot says of every client and key, after loading what is new."""
        snapshot = self.state.load()
        clients = {
            name: (
                c.provider,
                c.system_role,
                [(p.name, p.kind, p.system_role) for p in c.plugins],
                c.key,
                [t.name for t in c.functions],
                c.id,
                c.hashed_id,
            )
            for name, c in snapshot.clients.items()
        }
        return {
            "clients": clients,
            "tokens": dict(snapshot.tokens),
            "ids": dict(snapshot.client_ids),
            "plugins": sorted(snapshot.plugins),
            "providers": {n: (p.base_url, p.error) for n, p in snapshot.providers.items()},
        }

    def close(self) -> None:
        self.state.close()
        self.loop.run_until_complete(self.http.close())
        self.loop.close()


async def _session() -> aiohttp.ClientSession:
    return aiohttp.ClientSession()


def _urls(kind: str, tmp_path: Path, postgres_admin: Engine | None) -> Iterator[list[str]]:
    if kind == "sqlite":
        yield [f"sqlite:///{tmp_path / name}.sqlite3" for name in ("incremental", "whole")]
        return
    if postgres_admin is None:
        pytest.skip("PostgreSQL is not reachable on 127.0.0.1:5432")
    with (
        fresh_postgres_database(postgres_admin) as first,
        fresh_postgres_database(postgres_admin) as second,
    ):
        yield [first, second]


@pytest.mark.parametrize(
    ("kind", "seed"),
    [("sqlite", 1), ("sqlite", 2), ("sqlite", 3), ("postgresql", 4)],
)
def test_incremental_passes_equal_whole_ones(
    kind: str, seed: int, tmp_path: Path, postgres_admin: Engine | None
) -> None:
    rng = random.Random(seed)
    repo = GitRepo(tmp_path / "repo")
    world = World(rng)
    world.write(repo.root)
    repo.commit("start")
    for urls in _urls(kind, tmp_path, postgres_admin):
        incremental_engine, whole_engine = (open_database(url) for url in urls)
        incremental = _daemon(incremental_engine, repo.root)
        assert incremental.reconcile_once().outcome == "applied"
        replica = Serving(incremental_engine)
        replica.load()
        assert _daemon(whole_engine, repo.root).reconcile_once().outcome == "applied"
        good: list[dict[str, list[Document]]] = [copy.deepcopy(world.files)]
        by_path = {"applied": 0, "incremental": 0, "rows": 0}
        last = "applied"
        for step in range(STEPS):
            if last not in ("applied", "unchanged") and rng.random() < 0.5:
                world.files, world.broken = copy.deepcopy(good[-1]), {}
                what = "fix it: back to the last good state"
            elif rng.random() < 0.1:
                world.files, world.broken = copy.deepcopy(rng.choice(good)), {}
                what = "go back to an earlier good state"
            else:
                what = world.change()
            world.write(repo.root)
            repo.commit(f"step {step}: {what}")

            got = incremental.reconcile_once()
            whole = _daemon(whole_engine, repo.root).reconcile_once()
            context = f"seed {seed}, step {step}: {what}"
            last = got.outcome
            assert (got.outcome, got.plan) == (whole.outcome, whole.plan), context
            assert _rows(incremental_engine) == _rows(whole_engine), context
            if got.outcome == "applied":
                good.append(copy.deepcopy(world.files))
                by_path["applied"] += 1
                by_path["incremental"] += incremental.last_pass_incremental
                fresh_engine = open_database(f"sqlite:///{tmp_path / f'fresh{step}'}.sqlite3")
                assert _daemon(fresh_engine, repo.root).reconcile_once().ok, context
                assert _rows(fresh_engine) == _rows(incremental_engine), context
                fresh = Serving(fresh_engine)
                assert replica.load() == fresh.load(), context
                by_path["rows"] += replica.state.last_load[0] == "rows"
                fresh.close()
                fresh_engine.dispose()
        assert by_path["applied"] >= STEPS // 4, by_path
        assert by_path["incremental"] >= by_path["applied"] * 0.6, by_path
        assert by_path["rows"] == by_path["applied"], by_path  # each one read by its changes
        replica.close()
        incremental_engine.dispose()
        whole_engine.dispose()
