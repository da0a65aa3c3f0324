"""What a tool is: a name, a description, typed input and output, the scope it needs, and an async
function over the domain services. There is deliberately no generic "make any request" tool."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession

from prm.core.auth import Principal
from prm.settings import Settings

In = TypeVar("In", bound=BaseModel)
Out = TypeVar("Out", bound=BaseModel)
ToolFn = Callable[[AsyncSession, Principal, Any, Settings], Awaitable[BaseModel]]


@dataclass(frozen=True)
class ToolSpec:
    name: str
    description: str
    input_model: type[BaseModel]
    output_model: type[BaseModel]
    scope: str
    fn: ToolFn
    writes: bool

    def input_schema(self) -> dict[str, Any]:
        return self.input_model.model_json_schema()

    def output_schema(self) -> dict[str, Any]:
        return self.output_model.model_json_schema()

    def openai(self) -> dict[str, Any]:
        """OpenAI's function-calling format."""
        return {"type": "function",
                "function": {"name": self.name, "description": self.description, "parameters": self.input_schema()}}


_tools: dict[str, ToolSpec] = {}


def tool(name: str, *, scope: str, description: str, input: type[BaseModel], output: type[BaseModel],
         writes: bool) -> Callable[[ToolFn], ToolFn]:
    def decorate(fn: ToolFn) -> ToolFn:
        if name in _tools and _tools[name].fn is not fn:
            raise RuntimeError(f"tool {name!r} registered twice")
        _tools[name] = ToolSpec(name, description, input, output, scope, fn, writes)
        return fn

    return decorate


def get(name: str) -> ToolSpec | None:
    return _tools.get(name)


def all_tools() -> list[ToolSpec]:
    return sorted(_tools.values(), key=lambda t: t.name)
