"""``python -m bench`` (``make bench``): run the benchmark scenarios and write their report.

Scenarios, in this order (``--only`` to choose): ``daemon`` (commit to applied and to
served through ``samops run``, per database), ``chat`` (samops vs the upstream called
directly), with ``--with-litellm`` ``litellm`` (the same chat load through a LiteLLM proxy),
``curve`` (N = 11 to 10,000 clients through ``samops run`` and a ``samops serve`` replica:
one-file commit to served, key revocation, cold apply, RSS, per database; a plot,
``scale-curve.png``, beside the report), ``scale`` (10,000 clients and 10,000 plugins:
validate, apply, reconcile in-process; wall time and peak RSS, per database) and
``validate`` (in-process validation, hostile files); the ones that are sensitive to timing
run first. Every figure has a ratio against a baseline measured in the same run. The report
goes to ``bench/reports/bench-<UTC timestamp>.md`` and ``.json`` (the same data), copied to
``latest.*``.
"""

from __future__ import annotations

import argparse
import functools
import sys
import traceback
from collections.abc import Callable
from pathlib import Path

from sqlalchemy.engine import make_url

from bench import chat, curve, daemon, litellm_proxy, scale, validate
from bench.common import KINDS, LABELS, POSTGRES_URL, postgres_version
from bench.report import Report, Section, command_line

SCENARIOS = ("daemon", "chat", "litellm", "curve", "scale", "validate")
DEFAULT = ("daemon", "chat", "curve", "scale", "validate")
REPORTS = Path(__file__).resolve().parent / "reports"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add = parser.add_argument
    add("--only", choices=SCENARIOS, action="append", help="run only these (repeatable)")
    add(
        "--clients",
        type=int,
        default=10_000,
        help="scale, validate: LLM clients, and as many plugins (default: %(default)s)",
    )
    add(
        "--sizes",
        type=lambda text: tuple(int(n) for n in text.split(",")),
        default=curve.SIZES,
        metavar="N[,N...]",
        help="curve: repository sizes, in LLM clients (default: 11,100,1000,10000)",
    )
    add(
        "--curve-commits",
        type=int,
        default=curve.COMMITS,
        help="curve: one-file commits timed per size and database (default: %(default)s)",
    )
    add(
        "--commits",
        type=int,
        default=50,
        help="daemon: commits timed per database (default: %(default)s)",
    )
    add(
        "--chat-seconds",
        type=float,
        default=chat.SECONDS,
        help="chat, litellm: seconds of load per scenario with wrk (default: %(default)s)",
    )
    add(
        "--chat-requests",
        type=int,
        default=2000,
        help="chat, litellm without wrk: requests per scenario, a quarter at c=1 "
        "(default: %(default)s)",
    )
    add(
        "--chat-workers",
        type=lambda text: tuple(int(n) for n in text.split(",")),
        default=(1, 2),
        metavar="N[,N...]",
        help="chat: run samops with each of these --workers counts (default: 1,2)",
    )
    add(
        "--repeat",
        type=int,
        default=3,
        help="validate: runs per figure, median kept (default: %(default)s)",
    )
    add(
        "--database",
        choices=KINDS,
        action="append",
        help="daemon/scale: run on this database (repeatable; default: both, PostgreSQL when "
        "it answers)",
    )
    add(
        "--database-url",
        default=POSTGRES_URL,
        help="PostgreSQL server on which throwaway databases are created and dropped "
        "(default: $SAMOPS_BENCH_POSTGRES_URL or %(default)s)",
    )
    add(
        "--with-litellm",
        action="store_true",
        help="chat: also load a LiteLLM proxy (table and plot); --only litellm: it alone",
    )
    add("--litellm-bin", help="the `litellm` executable of its own virtualenv (default: PATH)")
    add(
        "--reports",
        type=Path,
        default=REPORTS,
        help="folder for the report (default: bench/reports)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = _parser().parse_args(argv)
    chosen = list(args.only or DEFAULT)
    litellm: tuple[str, str] | None = None
    if "litellm" in chosen or args.with_litellm:  # before anything runs: a usage problem
        litellm = litellm_proxy.locate(args.litellm_bin)
    settings = {k: str(v) for k, v in vars(args).items()}
    settings["database_url"] = _redacted(args.database_url)
    report = Report(command_line(_shown(argv)), settings)
    kinds, skipped = _databases(args, report, needed={"daemon", "curve", "scale"} & set(chosen))
    if litellm:
        report.versions["litellm"] = litellm[1]

    runs: list[tuple[str, Callable[[], list[Section]]]] = []
    for kind in kinds if "daemon" in chosen else []:
        runs.append((f"daemon-{kind}", functools.partial(_daemon, args, kind)))
    if "daemon" in chosen and skipped:
        runs.append(
            ("daemon-postgresql", functools.partial(_skipped, "daemon-postgresql", skipped))
        )
    if "chat" in chosen:
        beside = litellm if args.with_litellm else None
        runs.append(("chat", functools.partial(_chat, args, beside)))
    if litellm and "litellm" in chosen:
        runs.append(("litellm", functools.partial(_litellm, args, *litellm)))
    if "curve" in chosen:  # the heavy ones last: they leave the database server busy a while
        runs.append(("curve", functools.partial(_curve, args, kinds, skipped)))
    if "scale" in chosen:
        runs.append(("scale", functools.partial(_scale, args, kinds, skipped)))
    if "validate" in chosen:
        runs.append(("validate", functools.partial(_validate, args)))

    failed = False
    for key, scenario in runs:
        print(f"== {key}", flush=True)
        try:
            sections = scenario()
        except Exception as exc:  # one broken scenario must not lose the others' figures
            traceback.print_exc()
            sections = _skipped(key, f"failed: {type(exc).__name__}: {exc}")
            failed = True
        for section in sections:
            report.sections.append(section)
            print(section.markdown(), flush=True)
    markdown, document = report.write(args.reports)
    print(f"report: {markdown}\n        {document}")
    return 1 if failed else 0


def _databases(
    args: argparse.Namespace, report: Report, *, needed: set[str]
) -> tuple[list[str], str]:
    """The database kinds to run on, and why PostgreSQL is left out ("" when it is not)."""
    kinds = list(dict.fromkeys(args.database or KINDS))
    if not needed or "postgresql" not in kinds:
        return kinds, ""
    version, why = postgres_version(args.database_url)
    if version is None:
        if args.database:  # asked for by name: not a thing to skip quietly
            raise SystemExit(f"--database postgresql: {why}")
        print(f"PostgreSQL left out: {why}", flush=True)
        return [k for k in kinds if k != "postgresql"], why
    report.versions["postgresql server"] = version
    return kinds, ""


def _shown(argv: list[str]) -> list[str]:
    """The command line as the report shows it: database URLs without their password."""
    shown: list[str] = []
    for arg in argv:
        if shown and shown[-1] == "--database-url":
            arg = _redacted(arg)
        elif arg.startswith("--database-url="):
            arg = "--database-url=" + _redacted(arg.split("=", 1)[1])
        shown.append(arg)
    return shown


def _redacted(url: str) -> str:
    """A database URL as the report may show it: never with its password."""
    return make_url(url).render_as_string(hide_password=True)


def _daemon(args: argparse.Namespace, kind: str) -> list[Section]:
    return [daemon.run(commits=args.commits, kind=kind, postgres_url=args.database_url)]


def _scale(args: argparse.Namespace, kinds: list[str], skipped: str) -> list[Section]:
    section = scale.run(clients=args.clients, kinds=kinds, postgres_url=args.database_url)
    if skipped:
        section.notes.append(f"PostgreSQL left out: {skipped}")
    return [section]


def _curve(args: argparse.Namespace, kinds: list[str], skipped: str) -> list[Section]:
    sections = curve.run(
        sizes=args.sizes,
        kinds=kinds,
        postgres_url=args.database_url,
        commits=args.curve_commits,
        plot=args.reports / "scale-curve.png",
    )
    if skipped:
        sections[0].notes.append(f"PostgreSQL left out: {skipped}")
    return sections


def _validate(args: argparse.Namespace) -> list[Section]:
    return validate.run(clients=args.clients, repeat=args.repeat)


def _chat(args: argparse.Namespace, litellm: tuple[str, str] | None) -> list[Section]:
    return chat.run(
        requests=args.chat_requests,
        seconds=args.chat_seconds,
        workers=args.chat_workers,
        plot=args.reports / "chat-throughput.png",
        litellm=litellm,
    )


def _litellm(args: argparse.Namespace, binary: str, version: str) -> list[Section]:
    return [
        litellm_proxy.run(
            requests=args.chat_requests,
            seconds=args.chat_seconds,
            binary=binary,
            version=version,
        )
    ]


def _skipped(key: str, why: str) -> list[Section]:
    title = key.replace("-", " on ").replace("postgresql", LABELS["postgresql"])
    return [Section(key, title.capitalize(), "", [], skipped=why)]


if __name__ == "__main__":
    sys.exit(main())
