"""Pre-bound label children of a Prometheus metric, for the chat path.

``metric.labels(...)`` validates and joins the label values and takes a lock on every call;
under the chat bench it was a few percent of the serving process' CPU (py-spy, issue 18). A
``Children`` keeps each child once bound: one dict lookup per observation. Label values are
bounded where they are chosen (``chat_metrics.py``), so the dict is too.
"""

from __future__ import annotations

from typing import Any, Generic, TypeVar

from prometheus_client.metrics import MetricWrapperBase

M = TypeVar("M", bound=MetricWrapperBase)


class Children(Generic[M]):
    """``children(*values)`` is ``metric.labels(*values)``, remembered."""

    def __init__(self, metric: M) -> None:
        self.metric = metric
        self._bound: dict[tuple[str, ...], Any] = {}

    def __call__(self, *values: str) -> M:
        child = self._bound.get(values)
        if child is None:
            child = self._bound[values] = self.metric.labels(*values)
        return child
