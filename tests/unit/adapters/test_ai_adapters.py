"""AI adapters: the offline implementations, and the OpenAI ones against a faithful local HTTP fake."""

from __future__ import annotations

import io
import json
import math
import time
import wave

import pytest

from prm.adapters import embeddings, llm, speech
from prm.adapters.openai_api import AINotConfigured, AIProviderError, OpenAIClient, OpenAIConfig
from prm.settings import Settings
from tests.fixtures.openai_fake import FAKE_KEY, OpenAIFake


def client_for(fake: OpenAIFake, *, key: str = FAKE_KEY, retries: int = 3) -> OpenAIClient:
    return OpenAIClient(OpenAIConfig(api_key=key, base_url=fake.base_url, timeout_seconds=5, max_retries=retries,
                                     max_retry_wait_seconds=0.05))


# --- hashing embedder ------------------------------------------------------------------------------


async def test_hashing_embedder_is_deterministic_unit_length_384() -> None:
    e = embeddings.HashingEmbedder()
    [a, b] = await e.embed(["Knee pain after the new medication", "Knee pain after the new medication"])
    assert len(a) == 384 and a == b
    assert math.isclose(math.sqrt(sum(x * x for x in a)), 1.0, rel_tol=1e-9)
    assert e.lexical_only and e.model == "hashing-v1"


async def test_hashing_embedder_ranks_shared_words_higher() -> None:
    e = embeddings.HashingEmbedder()
    q, near, far = await e.embed(["knee pain", "my knees are in pain since Monday", "insurance card changed"])
    assert embeddings.cosine_similarity(q, near) > 0.3 > embeddings.cosine_similarity(q, far)


async def test_hashing_embedder_empty_text_is_zero_vector() -> None:
    [v] = await embeddings.HashingEmbedder().embed(["the and of"])  # stop words only
    assert v == [0.0] * 384
    assert embeddings.cosine_similarity(v, v) == 0.0


def test_tokens_fold_case_and_accents() -> None:
    assert embeddings.tokens("Dolor de RODILLA, médico!") == ["dolor", "rodilla", "medico"]


def test_from_settings_chooses_and_caches() -> None:
    s = Settings(_env_file=None)  # type: ignore[call-arg]
    e = embeddings.from_settings(s)
    assert isinstance(e, embeddings.HashingEmbedder)
    assert embeddings.from_settings(s) is e
    assert embeddings.describe(e)["quality"] == "lexical"
    assert isinstance(llm.from_settings(s), llm.OfflineLLM)
    assert isinstance(speech.from_settings(s), speech.OfflineSpeech)


def test_openai_without_key_is_refused() -> None:
    s = Settings(_env_file=None, embeddings_provider="openai")  # type: ignore[call-arg]
    with pytest.raises(AINotConfigured):
        embeddings.from_settings(s)


# --- OpenAI embeddings -----------------------------------------------------------------------------


async def test_openai_embeddings_request_shape_and_order(openai_fake: OpenAIFake) -> None:
    e = embeddings.OpenAIEmbedder(client_for(openai_fake), "text-embedding-3-small")
    vectors = await e.embed(["first text", "second text"])
    assert len(vectors) == 2 and all(len(v) == 384 for v in vectors)
    # the fake answers in reverse order: the adapter puts them back by index
    [again] = await e.embed(["second text"])
    assert vectors[1] == pytest.approx(again)
    sent = openai_fake.requests[0]
    assert sent.path == "/v1/embeddings"
    assert sent.headers["authorization"] == f"Bearer {FAKE_KEY}"
    assert sent.json == {"model": "text-embedding-3-small", "input": ["first text", "second text"],
                         "dimensions": 384, "encoding_format": "float"}
    assert e.model == "openai/text-embedding-3-small"


async def test_openai_retries_429_honouring_retry_after(openai_fake: OpenAIFake) -> None:
    openai_fake.fail_next(429, retry_after=0.01)
    openai_fake.fail_next(500)
    e = embeddings.OpenAIEmbedder(client_for(openai_fake))
    [v] = await e.embed(["hello there"])
    assert len(v) == 384
    assert len(openai_fake.requests) == 3


async def test_openai_retry_after_is_capped(openai_fake: OpenAIFake) -> None:
    openai_fake.fail_next(429, retry_after=3600)  # an hour: the client waits at most its cap (0.05 s)
    started = time.monotonic()
    await embeddings.OpenAIEmbedder(client_for(openai_fake)).embed(["x y"])
    assert time.monotonic() - started < 30


async def test_openai_gives_up_after_max_retries(openai_fake: OpenAIFake) -> None:
    openai_fake.fail_next(500, times=5)
    with pytest.raises(AIProviderError) as info:
        await embeddings.OpenAIEmbedder(client_for(openai_fake, retries=2)).embed(["x y"])
    assert info.value.status == 500 and info.value.retryable
    assert len(openai_fake.requests) == 3


async def test_openai_wrong_key_fails_without_retry(openai_fake: OpenAIFake) -> None:
    with pytest.raises(AIProviderError) as info:
        await embeddings.OpenAIEmbedder(client_for(openai_fake, key="sk-wrong")).embed(["x"])
    assert info.value.status == 401 and info.value.code == "invalid_api_key" and not info.value.retryable
    assert len(openai_fake.requests) == 1


async def test_openai_unreachable_is_retryable_error() -> None:
    c = OpenAIClient(OpenAIConfig(api_key="k", base_url="http://127.0.0.1:9/v1", timeout_seconds=1,
                                  max_retries=1, max_retry_wait_seconds=0.01))
    with pytest.raises(AIProviderError) as info:
        await embeddings.OpenAIEmbedder(c).embed(["x"])
    assert info.value.retryable and info.value.code == "unreachable"


# --- LLM ---------------------------------------------------------------------------------------------

SEARCH_TOOL = llm.Tool(name="search_notes", description="Search the clinic's notes",
                       parameters={"type": "object", "properties": {"query": {"type": "string"}},
                                   "required": ["query"]})


async def test_openai_llm_tool_call_round_trip(openai_fake: OpenAIFake) -> None:
    model = llm.OpenAILLM(client_for(openai_fake), "gpt-4o-mini")
    first = await model.chat([llm.ChatMessage(role="system", content="You help clinic staff."),
                              llm.ChatMessage(role="user", content="please search_notes for knee pain")],
                             tools=[SEARCH_TOOL], tool_choice="auto")
    assert first.finish_reason == "tool_calls"
    [call] = first.message.tool_calls
    assert call.name == "search_notes" and call.arguments == {"query": "fake"}
    sent = openai_fake.requests[0].json
    assert sent["tools"] == [{"type": "function", "function": {
        "name": "search_notes", "description": "Search the clinic's notes", "parameters": SEARCH_TOOL.parameters}}]
    assert sent["tool_choice"] == "auto"
    second = await model.chat([
        llm.ChatMessage(role="user", content="please search_notes for knee pain"),
        first.message,
        llm.ChatMessage(role="tool", content="2 notes found", tool_call_id=call.id, name=call.name),
    ], tools=[SEARCH_TOOL])
    assert second.finish_reason == "stop" and second.message.content
    wire = openai_fake.requests[1].json["messages"]
    assert wire[1]["tool_calls"][0]["function"] == {"name": "search_notes", "arguments": json.dumps({"query": "fake"})}
    assert wire[2] == {"role": "tool", "content": "2 notes found", "tool_call_id": call.id}
    assert second.usage.prompt_tokens == 11


async def test_offline_llm_follows_tool_protocol() -> None:
    model = llm.OfflineLLM()
    result = await model.chat([llm.ChatMessage(role="user", content='/tool search_notes {"query": "knee"}')],
                              tools=[SEARCH_TOOL])
    assert result.finish_reason == "tool_calls"
    assert result.message.tool_calls[0].arguments == {"query": "knee"}
    unknown = await model.chat([llm.ChatMessage(role="user", content='/tool delete_all {}')], tools=[SEARCH_TOOL])
    assert not unknown.message.tool_calls and "no language model" in (unknown.message.content or "")
    after = await model.chat([llm.ChatMessage(role="tool", content="3 hits", tool_call_id="c", name="search_notes")])
    assert after.message.content == "Tool search_notes returned: 3 hits"


async def test_offline_llm_runs_several_commands_one_per_turn() -> None:
    model = llm.OfflineLLM()
    other = llm.Tool(name="get_note", description="One note")
    goal = llm.ChatMessage(role="user", content='/tool search_notes {"query": "knee"}\n/tool get_note {"id": 7}')
    first = await model.chat([goal], tools=[SEARCH_TOOL, other])
    [call] = first.message.tool_calls
    assert (call.name, call.arguments) == ("search_notes", {"query": "knee"})
    history = [goal, first.message, llm.ChatMessage(role="tool", content="3 hits", tool_call_id=call.id,
                                                    name="search_notes")]
    second = await model.chat(history, tools=[SEARCH_TOOL, other])
    [call2] = second.message.tool_calls
    assert (call2.name, call2.arguments) == ("get_note", {"id": 7}) and call2.id != call.id
    history += [second.message, llm.ChatMessage(role="tool", content="the note", tool_call_id=call2.id,
                                                name="get_note")]
    done = await model.chat(history, tools=[SEARCH_TOOL, other])
    assert done.finish_reason == "stop" and done.message.content == "Tool get_note returned: the note"
    # a command for a tool not offered ends the sequence with the last result
    stopped = await model.chat(history[:3], tools=[SEARCH_TOOL])
    assert stopped.message.content == "Tool search_notes returned: 3 hits"
    # tool_choice "none": no call, whatever the message says
    assert not (await model.chat([goal], tools=[SEARCH_TOOL], tool_choice="none")).message.tool_calls


async def test_openai_fake_checks_every_tool_call_is_answered(openai_fake: OpenAIFake) -> None:
    """The peer refuses what OpenAI refuses: a turn after tool calls some of which got no answer."""
    model = llm.OpenAILLM(client_for(openai_fake), "gpt-4o-mini")
    openai_fake.script_chat([("search_notes", {"query": "a"}), ("search_notes", {"query": "b"})])
    first = await model.chat([llm.ChatMessage(role="user", content="go")], tools=[SEARCH_TOOL])
    assert [c.arguments for c in first.message.tool_calls] == [{"query": "a"}, {"query": "b"}]
    half = [llm.ChatMessage(role="user", content="go"), first.message,
            llm.ChatMessage(role="tool", content="x", tool_call_id=first.message.tool_calls[0].id)]
    with pytest.raises(AIProviderError) as refused:
        await model.chat(half, tools=[SEARCH_TOOL])
    assert refused.value.status == 400


# --- speech ------------------------------------------------------------------------------------------


def _wav(seconds: float) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(b"\x00\x00" * int(8000 * seconds))
    return buf.getvalue()


async def test_openai_speech_multipart_and_segments(openai_fake: OpenAIFake) -> None:
    stt = speech.OpenAISpeech(client_for(openai_fake), "whisper-1")
    audio = _wav(0.5)
    t = await stt.transcribe(audio, filename="call.wav", content_type="audio/wav", language="en")
    assert t.text == "Hello, I am calling about my appointment."
    assert [s.text for s in t.segments] == ["Hello,", "I am calling about my appointment."]
    form = openai_fake.requests[0].form
    assert form["model"] == "whisper-1" and form["response_format"] == "verbose_json" and form["language"] == "en"
    assert form["file"]["content"] == audio and form["file"]["filename"] == "call.wav"


async def test_openai_speech_new_models_use_plain_json(openai_fake: OpenAIFake) -> None:
    t = await speech.OpenAISpeech(client_for(openai_fake), "gpt-4o-transcribe").transcribe(
        _wav(0.1), filename="a.wav", content_type="audio/wav")
    assert t.text and t.segments == ()
    assert openai_fake.requests[0].form["response_format"] == "json"


async def test_offline_speech() -> None:
    stt = speech.OfflineSpeech()
    assert (await stt.transcribe(b"I need to move my appointment", filename="t.txt",
                                 content_type="text/plain")).text == "I need to move my appointment"
    wav = await stt.transcribe(_wav(1.0), filename="a.wav", content_type="audio/wav")
    assert wav.text == "" and wav.duration_seconds == pytest.approx(1.0)
    with pytest.raises(speech.UnsupportedAudio):
        await stt.transcribe(b"\xff\xfb\x90", filename="a.mp3", content_type="audio/mpeg")
    with pytest.raises(speech.UnsupportedAudio):
        await stt.transcribe(b"", filename="a.txt", content_type="text/plain")
