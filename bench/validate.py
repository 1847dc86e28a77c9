"""Validate: cost of a cold and a one-file-change validation, and of rejecting hostile files.

Figures are ratios against a baseline measured in the same run on the same files (parsing
them with PyYAML's C loader and nothing else), because this machine is shared and noisy.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import yaml

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


def _generate(root: Path, clients: int) -> None:
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


def run(*, clients: int, repeat: int) -> None:
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        _generate(root, clients)
        files = DirectorySource(root).read().files
        print(
            f"validate: {len(files)} files ({clients} clients + {clients} plugins), "
            f"median of {repeat}"
        )

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
        print(f"  baseline yaml.load_all (C)   {baseline * 1000:9.1f} ms   1.00x")
        print(f"  cold validate                {cold * 1000:9.1f} ms   {cold / baseline:5.2f}x")
        print(f"  one file changed (cached)    {warm * 1000:9.1f} ms   {warm / baseline:5.2f}x")

    print("hostile files: time to reject, against parsing the 1 KB example client")
    small = (Path(__file__).parents[1] / "manifests" / "clients" / "support.yaml").read_bytes()
    reference = _median_seconds(lambda: read_yaml_documents(small, "x"), repeat * 20)
    for label, data in _hostile_files().items():
        seconds = _median_seconds(lambda data=data: read_yaml_documents(data, "x"), repeat)
        diagnostics = read_yaml_documents(data, "x")[1]
        assert diagnostics and diagnostics[-1].is_error, label
        print(
            f"  {label:<28} {seconds * 1000:9.2f} ms   {seconds / reference:7.1f}x "
            f"({diagnostics[-1].code})"
        )
