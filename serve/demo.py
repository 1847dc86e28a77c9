"""What the example repository calls, served by ``samops run --demo`` (``make run``).

- The Stackademy enrolment API: the example ApiPlugin ``stackademy_enrolment`` calls
  ``http://127.0.0.1:8080/demo/stackademy/courses/{course_code}/seats/`` with a Bearer token;
  this route answers from the demo SQLite database.
- A local model: the example Provider ``local_model`` points at
  ``http://127.0.0.1:8080/demo/local-model/v1``, where the offline demo model answers
  (``serve/offline.py``), so the example's ``lab_assistant`` chats without Ollama.

Both exist only with ``--demo``, so the example works offline; production servers never carry
them.
"""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

from aiohttp import web

from serve.offline import create_offline_app

DEMO_DATABASE = "stackademy.sqlite3"


def add_demo_routes(app: web.Application, data_dir: Path) -> None:
    database = data_dir / DEMO_DATABASE

    def seats_left(code: str) -> int | None:
        with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as db:
            row = db.execute(
                "SELECT seats_left FROM courses WHERE course_code = ?", (code,)
            ).fetchone()
        return None if row is None else int(row[0])

    async def seats(request: web.Request) -> web.Response:
        if not request.headers.get("Authorization", "").startswith("Bearer "):
            return web.json_response({"error": "a Bearer token is required"}, status=401)
        code = request.match_info["code"]
        left = await asyncio.to_thread(seats_left, code)
        if left is None:
            return web.json_response({"error": f"no course {code!r}"}, status=404)
        return web.json_response({"course_code": code, "seats_left": left})

    app.router.add_get("/demo/stackademy/courses/{code}/seats/", seats)
    app.add_subapp("/demo/local-model/", create_offline_app())
