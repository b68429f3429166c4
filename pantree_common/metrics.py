"""Prometheus metrics, named as go-grpc-prometheus names them so existing dashboards fit.

Counted in the one server interceptor, so every service reports the same series; steps add
their own counters for the paths they take (for example which scorer produced the offers).
"""

from __future__ import annotations

import logging
from threading import Thread
from wsgiref.simple_server import WSGIServer

from prometheus_client import Counter, Histogram, start_http_server

log = logging.getLogger("pantree.metrics")

HANDLED = Counter(
    "grpc_server_handled_total",
    "RPCs completed on the server, by status code.",
    ["grpc_service", "grpc_method", "grpc_code"],
)
HANDLING_SECONDS = Histogram(
    "grpc_server_handling_seconds",
    "Time from the start of an RPC to its last response, in seconds.",
    ["grpc_service", "grpc_method"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
STREAM_MESSAGES = Counter(
    "grpc_server_msg_sent_total",
    "Messages sent by server-streaming RPCs.",
    ["grpc_service", "grpc_method"],
)
SCORING_PATHS = Counter(
    "pantree_offers_scored_total",
    "Offer sets returned by the recommendation step, by the path that scored them.",
    ["path"],
)
SIMILAR_LOOKUPS = Counter(
    "pantree_similar_lookups_total",
    "Similar-product lookups by query text, by whether cached neighbours answered them.",
    ["result"],
)
INSIGHTS = Counter(
    "pantree_insights_total",
    "Insights returned by the insights step, by the path that produced them (fallback or llm).",
    ["source"],
)
LLM_FALLBACKS = Counter(
    "pantree_llm_fallbacks_total",
    "Candidates the language model was asked about that kept their rule-based insight, by "
    "reason (a rejected reply, a failed call, the deadline or the rate limit).",
    ["reason"],
)
LLM_CACHE_LOOKUPS = Counter(
    "pantree_llm_cache_lookups_total",
    "Language-model prompts looked up in the reply cache, by hit or miss.",
    ["result"],
)
SKIPPED_STEPS = Counter(
    "pantree_skipped_steps_total",
    "Optional step calls the orchestrator went on without, by step and status code.",
    ["step", "code"],
)


def split_method(method: str) -> tuple[str, str]:
    """'/pkg.Service/Method' as ('pkg.Service', 'Method')."""
    _, service, name = method.split("/", 2)
    return service, name


def record(method: str, code: str, seconds: float, messages: int = 0) -> None:
    service, name = split_method(method)
    HANDLED.labels(service, name, code).inc()
    HANDLING_SECONDS.labels(service, name).observe(seconds)
    if messages:
        STREAM_MESSAGES.labels(service, name).inc(messages)


def serve(host: str, port: int) -> tuple[WSGIServer, Thread]:
    """Expose /metrics on its own port, apart from gRPC traffic."""
    server, thread = start_http_server(port, addr=host.strip("[]") or "::")
    log.info("metrics on /metrics", extra={"port": server.server_port})
    return server, thread
