"""Prometheus metrics: request latency by route template and status, jobs by state."""

from __future__ import annotations

import time
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from sqlalchemy import text
from starlette.types import Message, Receive, Scope, Send

from prm.core.asgi import HttpMiddleware

registry = CollectorRegistry()
REQUESTS = Counter(
    "prm_http_requests_total", "HTTP requests", ["method", "route", "status"], registry=registry
)
LATENCY = Histogram(
    "prm_http_request_duration_seconds",
    "HTTP request latency",
    ["method", "route", "status"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
    registry=registry,
)
JOBS = Gauge("prm_jobs", "Background jobs by queue, task and state", ["queue", "task", "state"], registry=registry)


class MetricsMiddleware(HttpMiddleware):
    """Pure ASGI middleware; labels by the matched route template, never the raw path."""

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        start = time.perf_counter()
        status = {"code": 500}

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "<unmatched>"
            labels = (scope["method"], template, str(status["code"]))
            REQUESTS.labels(*labels).inc()
            LATENCY.labels(*labels).observe(time.perf_counter() - start)


async def refresh_job_gauges(session: Any) -> None:
    rows = (
        await session.execute(
            text("SELECT queue_name, task_name, status::text, count(*) FROM procrastinate_jobs GROUP BY 1, 2, 3")
        )
    ).all()
    JOBS.clear()
    for queue, task, state, count in rows:
        JOBS.labels(queue, task, state).set(count)


def render() -> tuple[bytes, str]:
    return generate_latest(registry), CONTENT_TYPE_LATEST
