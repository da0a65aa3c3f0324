"""Chat completion with tool calling, behind one small Protocol.

* `OpenAILLM`: OpenAI's `/chat/completions` with `tools` (function calling).
* `OfflineLLM` (the default): deterministic, no network. It cannot reason; it follows a tiny,
  documented protocol so agents and their tests can drive tool calls without a model:
  - a user message `/tool <name> {json arguments}` makes it call tool `<name>` (if offered) with
    those arguments;
  - after a tool result it answers `Tool <name> returned: <result>` (truncated);
  - otherwise it answers `Offline assistant: no language model is configured.` followed by a
    short echo of the question's first sentence.
"""

from __future__ import annotations

import json
import re
import threading
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

from prm.adapters.openai_api import AINotConfigured, AIProviderError, OpenAIClient

Role = Literal["system", "user", "assistant", "tool"]


@dataclass(frozen=True)
class Tool:
    """A function the model may call: `parameters` is a JSON Schema object."""

    name: str
    description: str
    parameters: dict[str, Any] = field(default_factory=lambda: {"type": "object", "properties": {}})


@dataclass(frozen=True)
class ToolCall:
    id: str
    name: str
    arguments: dict[str, Any]


@dataclass(frozen=True)
class ChatMessage:
    role: Role
    content: str | None = None
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str | None = None  # for role "tool": the call this answers
    name: str | None = None  # for role "tool": the tool's name


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0


@dataclass(frozen=True)
class ChatResult:
    message: ChatMessage  # role "assistant": content and/or tool calls
    finish_reason: str  # "stop", "tool_calls", "length", ...
    model: str
    usage: Usage = field(default_factory=Usage)


@runtime_checkable
class LLM(Protocol):
    model: str

    async def chat(self, messages: Sequence[ChatMessage], *, tools: Sequence[Tool] = (),
                   tool_choice: str | None = None, temperature: float = 0.0,
                   max_tokens: int | None = None) -> ChatResult: ...


# --- OpenAI ------------------------------------------------------------------------------------------


def _wire_message(m: ChatMessage) -> dict[str, Any]:
    out: dict[str, Any] = {"role": m.role, "content": m.content}
    if m.tool_calls:
        out["tool_calls"] = [
            {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": json.dumps(c.arguments)}}
            for c in m.tool_calls
        ]
    if m.role == "tool":
        out["tool_call_id"] = m.tool_call_id
    return out


def _parse_tool_call(raw: dict[str, Any]) -> ToolCall:
    function = raw.get("function") or {}
    arguments_raw = function.get("arguments") or "{}"
    try:
        arguments = json.loads(arguments_raw)
    except ValueError:
        raise AIProviderError("the model sent tool arguments that are not JSON", code="invalid_tool_arguments",
                              retryable=True) from None
    if not isinstance(arguments, dict):
        raise AIProviderError("the model sent tool arguments that are not an object",
                              code="invalid_tool_arguments", retryable=True)
    return ToolCall(id=str(raw.get("id") or uuid.uuid4().hex), name=str(function.get("name", "")),
                    arguments=arguments)


class OpenAILLM:
    def __init__(self, client: OpenAIClient, model: str = "gpt-4o-mini") -> None:
        self.client = client
        self.model = model

    async def chat(self, messages: Sequence[ChatMessage], *, tools: Sequence[Tool] = (),
                   tool_choice: str | None = None, temperature: float = 0.0,
                   max_tokens: int | None = None) -> ChatResult:
        body: dict[str, Any] = {"model": self.model, "messages": [_wire_message(m) for m in messages],
                                "temperature": temperature}
        if tools:
            body["tools"] = [{"type": "function", "function": {"name": t.name, "description": t.description,
                                                               "parameters": t.parameters}} for t in tools]
            if tool_choice is not None:
                body["tool_choice"] = tool_choice if tool_choice in ("auto", "none", "required") else {
                    "type": "function", "function": {"name": tool_choice}}
        if max_tokens is not None:
            body["max_completion_tokens"] = max_tokens
        answer = await self.client.post("chat/completions", json=body)
        try:
            choice = answer["choices"][0]
            raw = choice["message"]
            calls = tuple(_parse_tool_call(c) for c in (raw.get("tool_calls") or []))
            usage = answer.get("usage") or {}
            return ChatResult(
                message=ChatMessage(role="assistant", content=raw.get("content"), tool_calls=calls),
                finish_reason=str(choice.get("finish_reason") or "stop"),
                model=str(answer.get("model") or self.model),
                usage=Usage(int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0)),
            )
        except (KeyError, IndexError, TypeError):
            raise AIProviderError("OpenAI chat answer has an unexpected shape", code="invalid_response") from None


# --- offline -----------------------------------------------------------------------------------------

_TOOL_COMMAND = re.compile(r"^\s*/tool\s+(?P<name>[A-Za-z0-9_.-]+)\s*(?P<args>\{.*\})?\s*$", re.DOTALL)


class OfflineLLM:
    """Deterministic stand-in for a model (see the module docstring for its protocol)."""

    model = "offline"

    async def chat(self, messages: Sequence[ChatMessage], *, tools: Sequence[Tool] = (),
                   tool_choice: str | None = None, temperature: float = 0.0,
                   max_tokens: int | None = None) -> ChatResult:
        last = messages[-1] if messages else ChatMessage(role="user", content="")
        offered = {t.name for t in tools}
        if last.role == "tool":
            result = (last.content or "")[:500]
            return self._say(f"Tool {last.name or 'call'} returned: {result}")
        if last.role == "user" and tool_choice != "none":
            match = _TOOL_COMMAND.match(last.content or "")
            if match and match["name"] in offered:
                try:
                    arguments = json.loads(match["args"] or "{}")
                except ValueError:
                    arguments = None
                if isinstance(arguments, dict):
                    call = ToolCall(id=f"call_{uuid.uuid5(uuid.NAMESPACE_OID, last.content or '').hex[:12]}",
                                    name=match["name"], arguments=arguments)
                    return ChatResult(message=ChatMessage(role="assistant", tool_calls=(call,)),
                                      finish_reason="tool_calls", model=self.model)
        question = re.split(r"(?<=[.!?])\s", (last.content or "").strip(), maxsplit=1)[0][:200]
        reply = "Offline assistant: no language model is configured."
        if question:
            reply += f" You asked: {question}"
        return self._say(reply)

    def _say(self, text: str) -> ChatResult:
        return ChatResult(message=ChatMessage(role="assistant", content=text), finish_reason="stop", model=self.model)


# --- building from settings --------------------------------------------------------------------------

_cache: dict[tuple[Any, ...], LLM] = {}
_cache_lock = threading.Lock()


def from_settings(settings: Any) -> LLM:
    """The LLM the settings choose (`LLM_PROVIDER`: offline | openai)."""
    from prm.adapters.embeddings import openai_config

    provider = settings.llm_provider
    key: tuple[Any, ...] = (provider, settings.llm_model, settings.openai_base_url,
                            settings.openai_api_key.get_secret_value() if settings.openai_api_key else "")
    with _cache_lock:
        if key not in _cache:
            if provider == "offline":
                _cache[key] = OfflineLLM()
            elif provider == "openai":
                _cache[key] = OpenAILLM(OpenAIClient(openai_config(settings)), settings.llm_model)
            else:  # pragma: no cover - settings validate the choice
                raise AINotConfigured(f"unknown LLM_PROVIDER {provider!r}")
        return _cache[key]
