"""Chat completion with tool calling, behind one small Protocol.

* `OpenAILLM`: OpenAI's `/chat/completions` with `tools` (function calling).
* `OfflineLLM` (the default): deterministic, no network. It cannot reason; it follows a tiny,
  documented protocol so agents and their tests can drive tool calls without a model:
  - a user message `/tool <name> {json arguments}` makes it call tool `<name>` (if offered) with
    those arguments; a user message of several such lines calls them one after the other, one
    per turn (the next after each tool result), stopping at the first tool not offered;
  - after the (last) tool result it answers `Tool <name> returned: <result>` (truncated);
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
_TOOL_LINE = re.compile(r"^\s*/tool\s+(?P<name>[A-Za-z0-9_.-]+)\s*(?P<args>\{.*\})?\s*$")


def _arguments(raw: str | None) -> dict[str, Any] | None:
    try:
        arguments = json.loads(raw or "{}")
    except ValueError:
        return None
    return arguments if isinstance(arguments, dict) else None


def _commands(text: str) -> list[tuple[str, dict[str, Any] | None]]:
    """The `/tool` commands of a user message: the whole message (its JSON may span lines), or one per line."""
    whole = _TOOL_COMMAND.match(text)
    if whole and _arguments(whole["args"]) is not None:
        return [(whole["name"], _arguments(whole["args"]))]
    lines = [_TOOL_LINE.match(line) for line in text.splitlines() if line.strip()]
    if len(lines) > 1 and all(lines):
        return [(m["name"], _arguments(m["args"])) for m in lines if m]
    return [(whole["name"], None)] if whole else []


class OfflineLLM:
    """Deterministic stand-in for a model (see the module docstring for its protocol)."""

    model = "offline"

    async def chat(self, messages: Sequence[ChatMessage], *, tools: Sequence[Tool] = (),
                   tool_choice: str | None = None, temperature: float = 0.0,
                   max_tokens: int | None = None) -> ChatResult:
        last = messages[-1] if messages else ChatMessage(role="user", content="")
        offered = {t.name for t in tools}
        asked = next((i for i in range(len(messages) - 1, -1, -1) if messages[i].role == "user"), None)
        commands = _commands(messages[asked].content or "") if asked is not None else []
        made = sum(len(m.tool_calls) for m in messages[(asked or 0) + 1:] if m.role == "assistant")
        if tool_choice != "none" and last.role in ("user", "tool") and made < len(commands):
            name, arguments = commands[made]
            if name in offered and arguments is not None:
                seed = f"{messages[asked].content if asked is not None else ''}#{made}"
                call = ToolCall(id=f"call_{uuid.uuid5(uuid.NAMESPACE_OID, seed).hex[:12]}", name=name,
                                arguments=arguments)
                return ChatResult(message=ChatMessage(role="assistant", tool_calls=(call,)),
                                  finish_reason="tool_calls", model=self.model)
        if last.role == "tool":
            result = (last.content or "")[:500]
            return self._say(f"Tool {last.name or 'call'} returned: {result}")
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
