"""Telling the outside world what happened: commit statuses and notifications.

Publish stage, after the fact and never on the reconcile's path (DESIGN.md, "Outbound"):

    daemon pass / control change ─┐
                                   ├─► Event ─► Outbound.emit ─► dedupe ─► queue per target
    budget crossing (serving) ─────┘             (any thread,               │
                                                  returns at once)          ▼
                                                               CommitStatus | Webhook | Slack
                                                               one request, retried with backoff

``events.py`` says what happened, ``targets.py`` how each target is told, ``dispatch.py`` sends,
``settings.py`` reads the operator's configuration (environment variables and files: tokens
and webhook URLs are secrets, never options on a command line).
"""
