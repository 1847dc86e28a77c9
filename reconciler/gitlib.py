"""GitPython, imported in one place for the whole package.

Beside the source stage (``source.py``, ``source_files.py``, ``follow.py`` import ``git`` from
here). GitPython looks for the ``git`` executable when it is imported and, without one,
refuses to import with a page of advice: every ``samops`` command, even one that reads a
plain folder, died with that traceback on a machine without git. Imported quietly, GitPython
raises ``GitCommandNotFound`` only when a git command runs, and ``source_files.git_errors``
turns that into a sentence with a hint.
"""

from __future__ import annotations

import os

os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")

import git

__all__ = ["git"]
