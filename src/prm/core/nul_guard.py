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

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from prm.core.errors import ValidationFailed

MESSAGE = "must not contain the NUL character (U+0000)"


def nul_path(value: Any, path: tuple[str, ...] = ()) -> tuple[str, ...] | None:
    """The path to the first string (or object key) in a decoded JSON value holding U+0000."""
    if isinstance(value, str):
        return path if "\x00" in value else None
    if isinstance(value, dict):
        for key, item in value.items():
            if "\x00" in key:
                return (*path, key.replace("\x00", "\\u0000"))
            found = nul_path(item, (*path, key))
            if found is not None:
                return found
    if isinstance(value, list):
        for index, item in enumerate(value):
            found = nul_path(item, (*path, str(index)))
            if found is not None:
                return found
    return None


def _form_field(raw: bytes) -> str | None:
    for name, value in parse_qsl(raw.decode("latin-1"), keep_blank_values=True):
        if "\x00" in name or "\x00" in value:
            return name.replace("\x00", "\\u0000")
    return None


def _json_field(raw: bytes) -> str | None:
    if b"\\u0000" not in raw:  # JSON must escape control characters, so this is the only spelling
        return None
    try:
        decoded = json.loads(raw)
    except ValueError:  # malformed JSON: FastAPI's own validation reports it
        return None
    path = nul_path(decoded)
    return None if path is None else ".".join(path) or "body"


def _problem(field: str, location: str, instance: str) -> tuple[int, bytes]:
    error = ValidationFailed.field(field, MESSAGE)
    body = error.problem(instance)
    body["errors"] = [{"field": field, "in": location, "message": MESSAGE, "type": "nul_character"}]
    return error.status, json.dumps(body).encode()


class NulGuardMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
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
        body = b""
        more = True
        while more:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                break
            body += message.get("body", b"")
            more = message.get("more_body", False)
        field = _json_field(body) if is_json else (_form_field(body) if b"%00" in body else None)
        if field is not None:
            await _reject(send, field, "body" if is_json else "form", scope["path"])
            return

        async def replay() -> Message:
            return messages.pop(0) if messages else await receive()

        await self.app(scope, replay, send)


async def _reject(send: Send, field: str, location: str, instance: str) -> None:
    status, payload = _problem(field, location, instance)
    await send({
        "type": "http.response.start",
        "status": status,
        "headers": [(b"content-type", b"application/problem+json"), (b"content-length", str(len(payload)).encode())],
    })
    await send({"type": "http.response.body", "body": payload})
