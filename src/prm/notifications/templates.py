"""Notification template rendering: sandboxed Jinja2, declared variables, strict about missing ones.

A template has a body, optionally a subject (email) and an HTML body (email), and declares the
variables it uses. `check` refuses a template that does not parse or that uses a variable it does
not declare; `render` refuses variables that are missing (never a silent blank). Rendering runs in
Jinja2's `SandboxedEnvironment` (no attribute access to internals, no imports); the HTML body is
autoescaped, text parts are not.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from jinja2 import StrictUndefined, Template, TemplateSyntaxError, UndefinedError, meta
from jinja2.sandbox import SandboxedEnvironment, SecurityError

_text_env = SandboxedEnvironment(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=False)
_html_env = SandboxedEnvironment(undefined=StrictUndefined, autoescape=True)

PARTS = ("subject", "body", "html_body")


class TemplateError(ValueError):
    """A template that cannot be used or rendered; `field` names the culprit (`body`, `variables.x`)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


@dataclass(frozen=True)
class TemplateSource:
    body: str
    subject: str | None = None
    html_body: str | None = None
    variables: tuple[str, ...] = ()

    def parts(self) -> dict[str, str]:
        return {name: getattr(self, name) for name in PARTS if getattr(self, name)}


@dataclass(frozen=True)
class Rendered:
    body: str
    subject: str | None = None
    html_body: str | None = None
    variables_used: tuple[str, ...] = field(default_factory=tuple)


# Parsing and compiling a template costs milliseconds; the same few texts are rendered for every
# message, so both are kept per (environment, text). A text that does not parse is not kept.
@functools.lru_cache(maxsize=1024)
def _undeclared(html: bool, text: str) -> frozenset[str]:
    return frozenset(meta.find_undeclared_variables((_html_env if html else _text_env).parse(text)))


@functools.lru_cache(maxsize=1024)
def _compiled(html: bool, text: str) -> Template:
    return (_html_env if html else _text_env).from_string(text)


def used_variables(source: TemplateSource) -> set[str]:
    """Every variable the template's parts refer to; raises TemplateError on a syntax error."""
    used: set[str] = set()
    for part, text in source.parts().items():
        try:
            used |= _undeclared(part == "html_body", text)
        except TemplateSyntaxError as exc:
            raise TemplateError(part, f"line {exc.lineno}: {exc.message}") from None
    return used


def check(source: TemplateSource) -> None:
    """Raise TemplateError unless the template parses and uses only declared variables."""
    undeclared = sorted(used_variables(source) - set(source.variables))
    if undeclared:
        raise TemplateError("variables", "used but not declared: " + ", ".join(undeclared))
    for name in source.variables:
        if not name.isidentifier():
            raise TemplateError("variables", f"{name!r} is not a valid variable name")


def render(
    source: TemplateSource, variables: Mapping[str, Any], *, extra_allowed: Iterable[str] = ()
) -> Rendered:
    """Render every part with `variables`; a missing declared variable is a TemplateError."""
    check(source)
    missing = [name for name in source.variables if name not in variables or variables[name] is None]
    if missing:
        raise TemplateError(
            f"variables.{missing[0]}",
            "missing value for declared variable"
            + (f" (also missing: {', '.join(missing[1:])})" if missing[1:] else ""),
        )
    allowed = set(source.variables) | set(extra_allowed)
    context = {k: v for k, v in variables.items() if k in allowed}
    out: dict[str, str] = {}
    for part, text in source.parts().items():
        try:
            out[part] = _compiled(part == "html_body", text).render(context).strip()
        except UndefinedError as exc:
            raise TemplateError(part, str(exc.message)) from None
        except SecurityError as exc:
            raise TemplateError(part, f"not allowed in a template: {exc}") from None
    return Rendered(
        body=out.get("body", ""),
        subject=out.get("subject"),
        html_body=out.get("html_body"),
        variables_used=tuple(sorted(used_variables(source))),
    )
