"""Edge benchmark: what a large request body costs before the app sees it.

    PYTHONPATH=src python benchmarks/edge_bodies.py

No database: the two edge middlewares run over a trivial ASGI app. Prints
1. the time for the NUL guard to collect JSON bodies of 1, 4 and 10 MB sent in 64 KiB chunks
   (linear since the chunks are joined once; the old `body +=` loop was quadratic);
2. the time for the body limit to refuse a 100 MB chunked body (it stops reading at the limit).
"""

from __future__ import annotations

import asyncio
import time
from types import SimpleNamespace
from typing import Any

from prm.core.body_limit import BodyLimitMiddleware
from prm.core.nul_guard import NulGuardMiddleware

CHUNK = 64 * 1024


async def ok_app(scope: Any, receive: Any, send: Any) -> None:
    while (await receive()).get("more_body"):
        pass
    await send({"type": "http.response.start", "status": 204, "headers": []})
    await send({"type": "http.response.body", "body": b""})


def scope(headers: list[tuple[bytes, bytes]]) -> dict[str, Any]:
    settings = SimpleNamespace(max_request_body_bytes=10 * 1024 * 1024, request_body_timeout_seconds=20)
    return {"type": "http", "method": "POST", "path": "/x", "query_string": b"", "headers": headers,
            "app": SimpleNamespace(state=SimpleNamespace(settings=settings))}


async def run(app: Any, total: int, headers: list[tuple[bytes, bytes]]) -> tuple[float, int, int]:
    sent = 0
    status = 0

    async def receive() -> dict[str, Any]:
        nonlocal sent
        size = min(CHUNK, total - sent)
        sent += size
        return {"type": "http.request", "body": b" " * size, "more_body": sent < total}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    started = time.perf_counter()
    await app(scope(headers), receive, send)
    return time.perf_counter() - started, status, sent


async def main() -> None:
    json_headers = [(b"content-type", b"application/json")]
    for megabytes in (1, 4, 10):
        seconds, status, _ = await run(NulGuardMiddleware(ok_app), megabytes * 1024 * 1024, json_headers)
        print(f"NUL guard, {megabytes:>2} MB JSON body in 64 KiB chunks: {seconds * 1000:8.1f} ms (status {status})")
    seconds, status, sent = await run(BodyLimitMiddleware(NulGuardMiddleware(ok_app)), 100 * 1024 * 1024,
                                      json_headers)
    print(f"body limit, 100 MB chunked body: refused with {status} after reading {sent / 1024 / 1024:.1f} MB "
          f"in {seconds * 1000:.1f} ms")


if __name__ == "__main__":
    asyncio.run(main())
