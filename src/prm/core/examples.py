"""Documentation and examples of the operations `prm.app` serves itself (see `core.apidocs`)."""

from __future__ import annotations

from prm.core.apidocs import Err, Op

OPERATIONS = {
    "GET /health": Op(
        "Liveness probe: answers 200 as long as the process serves HTTP, without touching the database. "
        "Point a container's liveness check here, never at `/ready`."),
    "GET /ready": Op(
        "Readiness probe: 200 when the database is reachable, migrated to the code's head, and the "
        "in-process job worker (if any) runs; a load balancer sends traffic only then.",
        errors=[Err(503, "database_unavailable", "Database not ready: OperationalError",
                    "The database is unreachable"),
                Err(503, "migrations_pending", "Database at migration 20261129_media, code expects "
                    "20261130_intake; run `prm migrate`", "The database is behind the code: run `prm migrate`"),
                Err(503, "worker_not_running", "The in-process job worker is not running (stopped): no detail",
                    "The in-process worker stopped (answered with `Retry-After`)")]),
    "GET /metrics": Op(
        "Prometheus metrics in the text exposition format: request counts and latencies per route, "
        "job queue depth per status, database pool use. Scrape it from inside the network only.",
        response="# HELP prm_http_requests_total HTTP requests\n# TYPE prm_http_requests_total counter\n"
                 'prm_http_requests_total{method="GET",route="/patients",status="200"} 42.0\n'),
}
