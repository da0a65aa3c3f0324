"""Request bodies are bounded in size and in time, before anything reads them.

`BodyLimitMiddleware` is the outermost layer of the app. It answers

* **413** `payload_too_large` at once when `Content-Length` declares more than
  `MAX_REQUEST_BODY_BYTES`, and as soon as a body sent without a length (chunked) or longer than
  declared passes the limit: bytes are counted as they arrive, nothing is buffered here;
* **408** `request_timeout` when the body has not fully arrived `REQUEST_BODY_TIMEOUT_SECONDS`
  after the request started (a declared length never sent would otherwise hold a connection and a
  worker until the server's own timeouts, which do not cover a request in progress).

Both answers are `application/problem+json` with `Connection: close`. The application behind it
then sees the client as disconnected, and whatever it answers is dropped.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from starlette.types import Message, Receive, Scope, Send

from prm.core.asgi import HttpMiddleware
from prm.core.errors import PayloadTooLarge, RequestTimeout

DISCONNECT: Message = {"type": "http.disconnect"}


def _declared_length(scope: Scope) -> int | None:
    for key, value in scope.get("headers", []):
        if key == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


async def _send_problem(send: Send, error: PayloadTooLarge | RequestTimeout, instance: str) -> None:
    payload = json.dumps(error.problem(instance)).encode()
    await send({
        "type": "http.response.start",
        "status": error.status,
        "headers": [(b"content-type", b"application/problem+json"),
                    (b"content-length", str(len(payload)).encode()),
                    (b"connection", b"close")],
    })
    await send({"type": "http.response.body", "body": payload})


class BodyLimitMiddleware(HttpMiddleware):
    """Reads `max_request_body_bytes` and `request_body_timeout_seconds` from `app.state.settings`."""

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        settings: Any = scope["app"].state.settings
        limit: int = settings.max_request_body_bytes
        timeout: float = settings.request_body_timeout_seconds
        declared = _declared_length(scope)
        if declared is not None and declared > limit:
            await _send_problem(send, PayloadTooLarge(limit), scope["path"])
            return

        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        state = {"received": 0, "complete": declared == 0, "answered": False, "started": False}

        async def reject(error: PayloadTooLarge | RequestTimeout) -> Message:
            if not state["started"]:
                await _send_problem(send, error, scope["path"])
            state["answered"] = True
            return DISCONNECT

        async def limited_receive() -> Message:
            if state["answered"]:
                return DISCONNECT
            if state["complete"]:
                return await receive()
            try:
                async with asyncio.timeout(max(0.0, deadline - loop.time())):
                    message = await receive()
            except TimeoutError:
                return await reject(RequestTimeout(timeout))
            if message["type"] == "http.request":
                state["received"] += len(message.get("body", b""))
                if state["received"] > limit:
                    return await reject(PayloadTooLarge(limit))
                if not message.get("more_body", False):
                    state["complete"] = True
            return message

        async def guarded_send(message: Message) -> None:
            if state["answered"]:
                return  # the client already has its 413/408
            if message["type"] == "http.response.start":
                state["started"] = True
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except Exception:
            if not state["answered"]:
                raise
            # The application failed on the cut-off body (a disconnect); the client has its answer.
