"""Validate, in process: a cold and a one-file-change validation, and rejecting hostile files.

Figures are ratios against a baseline measured in the same run on the same files (parsing
them with PyYAML's C loader and nothing else), because this machine is shared and noisy.
``generate`` writes the repository of N clients and N plugins that ``bench/scale.py`` uses too.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from bench.report import Column, Section, ratio
from reconciler.sam.revision import ParseCache, validate_files
from reconciler.sam.yamlread import read_yaml_documents
from reconciler.source import DirectorySource, SourceFile, blob_sha

CLIENT = """\
apiVersion: smarter.sh/v1
kind: LLMClient
metadata: {{name: client_{n}, description: Generated client {n}, version: 1.0.{n}}}
spec:
  config:
    defaultSystemRole: You are assistant number {n}. Be brief and use your tools.
    defaultTemperature: 0.{d}
  plugins: [plugin_{n}]
  functions: [calculator]
"""
PLUGIN = """\
apiVersion: smarter.sh/v1
kind: Plugin
metadata: {{name: plugin_{n}, pluginClass: static, description: Facts for client {n}}}
spec:
  selector: {{directive: search_terms, searchTerms: [fact, number {n}]}}
  prompt: {{systemRole: Use the plugin_{n} tool for facts.}}
  data:
    staticData:
      hours: 9 to 5
      phone: "+1 555 {n}"
"""


def _median_seconds(action: Callable[[], object], repeat: int) -> float:
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        action()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


def generate(root: Path, clients: int) -> None:
    """``clients`` LLM clients, each with its own static plugin, one file each."""
    for n in range(clients):
        (root / f"client_{n}.yaml").write_text(CLIENT.format(n=n, d=n % 10))
        (root / f"plugin_{n}.yaml").write_text(PLUGIN.format(n=n))


def _hostile_files() -> dict[str, bytes]:
    laughs = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for parent, child in zip("abcdefgh", "bcdefghi", strict=True):
        laughs.append(f"{child}: &{child} [{', '.join(['*' + parent] * 9)}]")
    return {
        "billion laughs": "\n".join(laughs).encode(),
        "200k nested [": b"[" * 200_000,
        "1 MiB + 1 file": b"x: " + b"a" * (1024 * 1024 - 2),
    }


def run(*, clients: int, repeat: int) -> list[Section]:
    with tempfile.TemporaryDirectory(prefix="samops-bench-") as folder:
        root = Path(folder)
        generate(root, clients)
        files = DirectorySource(root).read().files

        def parse_only() -> None:
            for f in files:
                list(yaml.load_all(f.data, Loader=yaml.CSafeLoader))

        baseline = _median_seconds(parse_only, repeat)
        cold = _median_seconds(lambda: validate_files("r", files), repeat)
        cache = ParseCache()
        validate_files("r", files, cache=cache)
        changed = list(files)
        edited = changed[0].data.replace(b"Be brief", b"Be thorough")
        changed[0] = SourceFile(changed[0].path, blob_sha(edited), edited)
        warm = _median_seconds(lambda: validate_files("r", changed, cache=cache), repeat)
    validate = Section(
        "validate",
        f"Validate in process: {len(files):,} files",
        f"{clients:,} LLM clients and {clients:,} plugins, one file each, already in memory; "
        f"median of {repeat} runs. Baseline: parsing the same files with PyYAML's C loader "
        "and nothing else.",
        [Column("step", "step"), Column("ms", "ms"), Column("x", "x baseline", 2)],
        [
            {"step": "baseline: yaml.load_all (C loader)", "ms": baseline * 1000, "x": 1.0},
            {"step": "cold validate", "ms": cold * 1000, "x": ratio(cold, baseline)},
            {
                "step": "one file changed (parse cache by blob SHA)",
                "ms": warm * 1000,
                "x": ratio(warm, baseline),
            },
        ],
    )
    return [validate, _hostile(repeat)]


def _hostile(repeat: int) -> Section:
    small = (Path(__file__).parents[1] / "manifests" / "clients" / "support.yaml").read_bytes()
    reference = _median_seconds(lambda: read_yaml_documents(small, "x"), repeat * 20)
    rows: list[dict[str, Any]] = [
        {"file": "baseline: the 1 KB example client", "ms": reference * 1000, "x": 1.0}
    ]
    for label, data in _hostile_files().items():

        def read(data: bytes = data) -> object:
            return read_yaml_documents(data, "x")

        seconds = _median_seconds(read, repeat)
        diagnostics = read_yaml_documents(data, "x")[1]
        assert diagnostics and diagnostics[-1].is_error, label
        rows.append(
            {
                "file": label,
                "ms": seconds * 1000,
                "x": ratio(seconds, reference),
                "code": diagnostics[-1].code,
            }
        )
    return Section(
        "hostile",
        "Hostile files: time to reject",
        f"Median of {repeat} runs. Baseline: reading the 1 KB example client "
        "(manifests/clients/support.yaml).",
        [
            Column("file", "file"),
            Column("ms", "ms", 3),
            Column("x", "x baseline", 2),
            Column("code", "rejected as"),
        ],
        rows,
    )
