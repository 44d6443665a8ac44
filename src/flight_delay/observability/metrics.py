"""The service's instruments and their exposition, correct under several gunicorn workers."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram
from prometheus_client.exposition import choose_encoder
from prometheus_client.multiprocess import MultiProcessCollector

from flight_delay.observability.multiprocess import multiprocess_enabled

log = logging.getLogger(__name__)

CACHED_CHILDREN = 1024
_children: dict[tuple[Any, tuple[str, ...]], Any] = {}

HTTP_REQUESTS = Counter(
    "flight_delay_http_requests", "HTTP requests answered", ["endpoint", "method", "status"]
)
HTTP_LATENCY = Histogram(
    "flight_delay_http_request_duration_seconds",
    "Time from the request's arrival in the app to its response",
    ["endpoint", "method"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
PREDICTIONS = Counter("flight_delay_predictions", "Flights scored and recorded", ["model_version"])
UNSEEN_INPUTS = Counter(
    "flight_delay_unseen_inputs", "Flight fields the model never saw in training (a warning each)", ["field"]
)
MODEL_LOADS = Counter("flight_delay_model_loads", "Model uploads by outcome", ["outcome", "code"])
HISTORY_WRITE_FAILURES = Counter(
    "flight_delay_history_write_failures", "Predictions refused because the history could not be written"
)
SHADOW_PREDICTIONS = Counter(
    "flight_delay_shadow_predictions", "Flights a shadow version scored and recorded", ["model_version"]
)
SHADOW_DROPPED = Counter(
    "flight_delay_shadow_dropped",
    "Flights a shadow version did not score or record: queue_full, unscorable or unrecorded",
    ["reason"],
)


class Collectors:
    """Several collectors as one registry, for the encoders (which only call collect())."""

    def __init__(self, *sources: Any) -> None:
        self.sources = sources

    def collect(self) -> Iterator[Any]:
        """Every source's metric families, in order."""
        for source in self.sources:
            yield from source.collect()


def exposition(accept: str | None, *computed: Any) -> tuple[bytes, str]:
    """Renders every metric in the format the scraper accepts: all workers' in multiprocess mode.

    `computed`: collectors of figures this process renders at scrape time (never in the metric files).
    """
    encode, content_type = choose_encoder(accept or "")
    if multiprocess_enabled():
        registry = CollectorRegistry()
        MultiProcessCollector(registry)
        return encode(Collectors(registry, *computed)), content_type
    return encode(Collectors(REGISTRY, *computed)), content_type


def best_effort(update: Callable[[], object]) -> None:
    """Applies a metric update; a failure (a full disk cannot grow the metric files) never fails a request."""
    try:
        update()
    except Exception:  # metrics are observation: the answer and the history come first
        log.warning("a metrics update failed; the request goes on", exc_info=True)


def labelled(metric: Any, *values: str) -> Any:
    """The metric's child for these label values, looked up once per process and label set.

    labels() takes a lock and checks the values on every call: a tenth of the metrics' cost per
    request. The children stay valid across fork (their values follow the pid). Past CACHED_CHILDREN
    label sets (odd methods, say) they are looked up each time rather than kept.
    """
    key = (metric, values)
    child = _children.get(key)
    if child is None:
        child = metric.labels(*values)
        if len(_children) < CACHED_CHILDREN:
            _children[key] = child
    return child


def observe_request(endpoint: str, method: str, status: int, elapsed: float | None) -> None:
    """Counts an answered request under its route's pattern, and its latency when it was timed."""
    best_effort(lambda: labelled(HTTP_REQUESTS, endpoint, method, str(status)).inc())
    if elapsed is not None:
        best_effort(lambda: labelled(HTTP_LATENCY, endpoint, method).observe(elapsed))
