"""Prometheus metrics of one server: requests by route and status, latency, model version and
reloads. Each app has its own registry, so several apps in one process (tests) do not mix."""

from __future__ import annotations

from prometheus_client import (CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram,
                               disable_created_metrics, generate_latest)

disable_created_metrics()  # the *_created series double the exposition and nobody reads them here

ROUTES = ("/health", "/model", "/recommend", "/recommend/new", "/similar", "/metrics", "/reload")
# Latency buckets in seconds: the targets are a few milliseconds per request.
BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)


class ServerMetrics:
    """The counters, histogram and gauges, and their text exposition."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("negspace_requests", "HTTP requests answered",
                                ["route", "status"], registry=self.registry)
        self.latency = Histogram("negspace_request_seconds", "Time to answer a request",
                                 ["route"], buckets=BUCKETS, registry=self.registry)
        self.version = Gauge("negspace_model_version", "Version of the served model (1, +1 "
                             "per successful reload)", registry=self.registry)
        self.loaded = Gauge("negspace_model_loaded_timestamp_seconds",
                            "When the served model was loaded", registry=self.registry)
        self.reloads = Counter("negspace_reloads", "Reload attempts", ["result"],
                               registry=self.registry)
        self.users = Gauge("negspace_model_users", "Users of the served model",
                           registry=self.registry)
        self.items = Gauge("negspace_model_items", "Items of the served model",
                           registry=self.registry)

    def observe(self, route: str, status: int, seconds: float) -> None:
        """Counts one answered request; unknown paths count as route "other" (a fuzzer's
        paths must not create one time series each)."""
        label = route if route in ROUTES else "other"
        self.requests.labels(label, str(status)).inc()
        self.latency.labels(label).observe(seconds)

    def model(self, version: int, loaded_at: float, users: int, items: int) -> None:
        self.version.set(version)
        self.loaded.set(loaded_at)
        self.users.set(users)
        self.items.set(items)

    def text(self) -> bytes:
        return generate_latest(self.registry)
