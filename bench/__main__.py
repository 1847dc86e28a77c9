"""``python -m bench``: run the benchmark scenarios and print their figures."""

from __future__ import annotations

import argparse

from bench import chat, daemon, validate


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument(
        "--only",
        choices=["validate", "daemon", "chat"],
        action="append",
        help="run only these scenarios (repeatable; default: all)",
    )
    parser.add_argument(
        "--clients",
        type=int,
        default=2000,
        help="LLM clients (and as many plugins) in the generated repository",
    )
    parser.add_argument("--repeat", type=int, default=5, help="runs per figure (median kept)")
    parser.add_argument(
        "--commits", type=int, default=50, help="commits timed by the daemon scenario"
    )
    parser.add_argument("--database-url", help="run the daemon scenario on this database")
    parser.add_argument(
        "--chat-requests",
        type=int,
        default=1000,
        help="requests per chat scenario (a quarter of it at concurrency 1)",
    )
    args = parser.parse_args()
    chosen = set(args.only or ["validate", "daemon", "chat"])
    if "validate" in chosen:
        validate.run(clients=args.clients, repeat=args.repeat)
    if "daemon" in chosen:
        daemon.run(commits=args.commits, database_url=args.database_url)
    if "chat" in chosen:
        chat.run(requests=args.chat_requests)


main()
