"""``python -m reconciler`` runs the ``samops`` command."""

from reconciler.cli import main

main()
