"""Refuse U+0000 in request text at the edge, as a 422 naming the field.

PostgreSQL cannot store the NUL character in `text`, `varchar` or `jsonb`, so a query parameter,
form field or JSON string (or object key) carrying one would otherwise fail deep in the database
driver as a 500. `NulGuardMiddleware` checks the query string, and bodies sent as JSON or as an
urlencoded form, before routing, and answers `422 validation_failed` with the offending field's
dotted path (`identifiers.1.system`) and where it was (`query`, `body`, `form`).
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qsl

from starlette.types import Message, Receive, Scope, Send

from prm.core.asgi import HttpMiddleware
from prm.core.errors import ValidationFailed

MESSAGE = "must not contain the NUL character (U+0000)"


def nul_path(value: Any, path: tuple[str, ...] = ()) -> tuple[str, ...] | None:
    """The path to the first string (or object key) in a decoded JSON value holding U+0000.

    Iterative (an explicit stack), so any depth the JSON decoder accepted is walked without
    recursion; the order is the document's order.
    """
    stack: list[tuple[Any, tuple[str, ...]]] = [(value, path)]
    while stack:
        item, where = stack.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return where
        elif isinstance(item, dict):
            for key in item:
                if "\x00" in key:
                    return (*where, key.replace("\x00", "\\u0000"))
            stack.extend((item[key], (*where, key)) for key in reversed(list(item)))
        elif isinstance(item, list):
            stack.extend((child, (*where, str(i))) for i, child in reversed(list(enumerate(item))))
    return None


def _form_field(raw: bytes) -> str | None:
    for name, value in parse_qsl(raw.decode("latin-1"), keep_blank_values=True):
        if "\x00" in name or "\x00" in value:
            return name.replace("\x00", "\\u0000")
    return None


TOO_DEEP = "is nested too deeply"


def _json_field(raw: bytes) -> tuple[str, str] | None:
    """(field, message) for a JSON body holding U+0000 (or too deep to decode), else None."""
    if b"\\u0000" not in raw:  # JSON must escape control characters, so this is the only spelling
        return None
    try:
        decoded = json.loads(raw)
    except RecursionError:  # deeper than the decoder goes: refuse it here rather than fail later
        return "body", TOO_DEEP
    except ValueError:  # malformed JSON: FastAPI's own validation reports it
        return None
    path = nul_path(decoded)
    return None if path is None else (".".join(path) or "body", MESSAGE)


def _problem(field: str, location: str, instance: str, message: str = MESSAGE) -> tuple[int, bytes]:
    error = ValidationFailed.field(field, message)
    body = error.problem(instance)
    kind = "nul_character" if message == MESSAGE else "too_deep"
    body["errors"] = [{"field": field, "in": location, "message": message, "type": kind}]
    return error.status, json.dumps(body).encode()


class NulGuardMiddleware(HttpMiddleware):
    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        query = scope.get("query_string", b"")
        if b"%00" in query or b"\x00" in query:
            field = _form_field(query)
            if field is not None:
                await _reject(send, field, "query", scope["path"])
                return
        content_type = dict(scope.get("headers", [])).get(b"content-type", b"").split(b";")[0].strip().lower()
        is_json = content_type == b"application/json" or content_type.endswith(b"+json")
        is_form = content_type == b"application/x-www-form-urlencoded"
        if not (is_json or is_form):
            await self.app(scope, receive, send)
            return

        messages: list[Message] = []
        chunks: list[bytes] = []
        more = True
        while more:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                break
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        body = b"".join(chunks)
        if is_json:
            found = _json_field(body)
        else:
            form_field = _form_field(body) if b"%00" in body else None
            found = (form_field, MESSAGE) if form_field is not None else None
        if found is not None:
            await _reject(send, found[0], "body" if is_json else "form", scope["path"], found[1])
            return

        async def replay() -> Message:
            return messages.pop(0) if messages else await receive()

        await self.app(scope, replay, send)


async def _reject(send: Send, field: str, location: str, instance: str, message: str = MESSAGE) -> None:
    status, payload = _problem(field, location, instance, message)
    await send({
        "type": "http.response.start",
        "status": status,
        "headers": [(b"content-type", b"application/problem+json"), (b"content-length", str(len(payload)).encode())],
    })
    await send({"type": "http.response.body", "body": payload})
