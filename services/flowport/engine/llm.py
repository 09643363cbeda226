"""The LLM seam: what an llm node needs from a provider, and the OpenAI-compatible client."""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import time
import urllib.parse
import urllib.request
from collections.abc import AsyncGenerator, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol, TypedDict

import aiohttp
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential,
    wait_random,
)

from flowport.engine.sse import event_batches
from flowport.errors import Unavailable, UpstreamFailed
from flowport.settings import Settings

# How long `complete` goes on through chunks before the run's consumer may send them.
PAUSE_EVERY_S = 0.0005

NO_PROVIDER = "no LLM provider configured: set FLOWPORT_LLM_BASE_URL"
# What the openai SDK retried besides server errors: timeouts, conflicts, rate limits.
RETRY_STATUSES = frozenset({408, 409, 429})
MAX_BACKOFF_S = 8.0
# 0.5 s, 1 s, 2 s, ... as the SDK waited; the jitter spreads out streams refused together.
BACKOFF = wait_exponential(multiplier=0.5, max=MAX_BACKOFF_S) + wait_random(0, 0.25)
_MAX_ERROR_MESSAGE = 200


class ContentPart(TypedDict, total=False):
    """One part of a message with images, in OpenAI's format: text or an image URL."""

    type: Literal["text", "image_url"]
    text: str
    image_url: dict[str, str]


class ChatMessage(TypedDict):
    role: Literal["system", "user", "assistant"]
    # Plain text, or parts when the message carries images.
    content: str | list[ContentPart]


class TokenUsage(TypedDict):
    """Tokens one call (or, summed, one run) used, as the provider counted them."""

    prompt_tokens: int
    completion_tokens: int
    # Part of completion_tokens that reasoning models spent thinking; 0 when not told.
    reasoning_tokens: int
    total_tokens: int


@dataclass(frozen=True, slots=True)
class Delta:
    """One streamed chunk: answer text, or reasoning text (then content is ""), or, last, the
    call's token usage alone (content "")."""

    content: str
    reasoning: str | None = None
    usage: TokenUsage | None = None


@dataclass(frozen=True, slots=True)
class Completion:
    content: str
    reasoning: str | None
    usage: TokenUsage | None  # None when the provider did not report it


class LlmClient(Protocol):
    def stream_chat(
        self, *, messages: Sequence[ChatMessage], model: str, temperature: float | None
    ) -> AsyncGenerator[Delta, None]:
        """Streams the answer; raises UpstreamFailed when the provider fails. A generator,
        so that closing it early (a cancelled node) closes the HTTP stream at once."""
        ...

    async def aclose(self) -> None: ...


class OpenAiChat:
    """An OpenAI-compatible provider (OpenAI, DeepSeek, vLLM, Ollama, ...) over aiohttp.

    One per service: it holds the connection pool. Chunks stay plain dicts: the openai SDK
    built a pydantic model per chunk, most of an llm node's CPU. aiohttp rather than httpx:
    against the same provider its first delta came sooner, and a chunk and an open stream
    cost less CPU and memory (README, Dependencies).
    """

    def __init__(
        self,
        settings: Settings,
        *,
        max_retries: int = 2,
        on_usage: Callable[[str, TokenUsage], None] | None = None,
    ) -> None:
        if not settings.llm_base_url:
            raise Unavailable(NO_PROVIDER)
        self._url = settings.llm_base_url.rstrip("/") + "/chat/completions"
        self._timeout_s = settings.llm_timeout_s
        self._max_retries = max_retries
        self._headers = {
            # Local providers need no key, but some proxies in front of them insist on the
            # header; a placeholder satisfies them.
            "Authorization": f"Bearer {settings.llm_api_key or 'unused'}",
            "Accept": "text/event-stream",
        }
        # Each read may take this long, so a stream runs as long as chunks keep coming.
        self._timeout = aiohttp.ClientTimeout(
            total=None, connect=settings.llm_timeout_s, sock_read=settings.llm_timeout_s
        )
        # Read once: aiohttp's trust_env would read ~/.netrc in a worker thread on every call,
        # a thread hop that delayed each request by about a millisecond.
        self._proxy = _environment_proxy(self._url)
        self._session: aiohttp.ClientSession | None = None
        # Told each call's usage once, as the provider reports it (the metrics count tokens).
        self._on_usage = on_usage

    def _client(self) -> aiohttp.ClientSession:
        # Made on first use: a session belongs to the event loop it was made in.
        if self._session is None:
            self._session = aiohttp.ClientSession(
                # As the openai SDK's pool: room for 1,000 concurrent streams.
                connector=aiohttp.TCPConnector(limit=1000),
                headers=self._headers,
                timeout=self._timeout,
            )
        return self._session

    async def stream_chat(
        self, *, messages: Sequence[ChatMessage], model: str, temperature: float | None
    ) -> AsyncGenerator[Delta, None]:
        body: dict[str, Any] = {
            "model": model,
            "messages": list(messages),
            "stream": True,
            # The last chunk then carries the call's token usage.
            "stream_options": {"include_usage": True},
        }
        # Unset rather than null: some providers reject "temperature": null.
        if temperature is not None:
            body["temperature"] = temperature
        response = await self._open(body)
        try:
            if response.content_type != "text/event-stream":  # a 2xx answer of another kind
                raise _upstream_failed("did not answer with an event stream")
            batches = event_batches(response.content.iter_any())
            async with contextlib.aclosing(batches):
                async for events in batches:
                    for event in events:
                        if event.data.startswith("[DONE]"):
                            return
                        if event.data:  # an empty data field carries no chunk
                            for delta in _deltas(event.data):
                                if delta.usage is not None and self._on_usage is not None:
                                    self._on_usage(model, delta.usage)
                                yield delta
        except _TRANSPORT_ERRORS as exc:
            raise self._transport_failed(exc, "the connection broke") from None
        finally:
            # Finished, failed or closed early (a cancelled node): the HTTP stream ends now.
            # A response read to its end returns its connection to the pool; any other
            # closes it.
            response.release()

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def _open(self, body: dict[str, Any]) -> aiohttp.ClientResponse:
        """Sends the request, retrying as the openai SDK did; a 2xx response still to be read.

        Retries happen only here, before the answer's first byte: once deltas were yielded,
        a second attempt would repeat them.
        """
        # A fresh one per call: AsyncRetrying keeps per-call state on itself.
        retrying = AsyncRetrying(
            stop=stop_after_attempt(1 + self._max_retries),
            wait=_backoff,
            retry=retry_if_exception(_retryable),
            reraise=True,
        )
        try:
            response: aiohttp.ClientResponse = await retrying(self._send, body)
        except _Refused as exc:
            raise _upstream_failed(f"HTTP {exc.status} {exc.reason}".rstrip()) from None
        except _TRANSPORT_ERRORS as exc:
            raise self._transport_failed(exc, "could not connect") from None
        return response

    async def _send(self, body: dict[str, Any]) -> aiohttp.ClientResponse:
        # aiohttp follows redirects, as the openai SDK did: a provider behind one keeps working.
        response = await self._client().post(self._url, json=body, proxy=self._proxy)
        if not 200 <= response.status < 300:
            # The body is never shown (it may echo the request), so it is not read.
            response.release()
            raise _Refused(response.status, response.reason or "", response.headers)
        return response

    def _transport_failed(self, exc: BaseException, otherwise: str) -> UpstreamFailed:
        # aiohttp's connect and read timeouts are TimeoutErrors.
        if isinstance(exc, TimeoutError):
            return _upstream_failed(f"timed out after {self._timeout_s:g}s")
        return _upstream_failed(otherwise)


def _environment_proxy(url: str) -> str | None:
    """The proxy HTTP_PROXY, HTTPS_PROXY and NO_PROXY name for `url`, as httpx used them."""
    parts = urllib.parse.urlsplit(url)
    if urllib.request.proxy_bypass(parts.hostname or ""):
        return None
    return urllib.request.getproxies().get(parts.scheme)


class _Refused(Exception):
    """The provider answered with a status other than 2xx."""

    # `headers`: the response's, whose names aiohttp looks up in any case.
    def __init__(self, status: int, reason: str, headers: Mapping[str, str]) -> None:
        super().__init__(status)
        self.status = status
        self.reason = reason
        self.headers = headers


# What a broken, refused or stalled connection raises: aiohttp's errors and its timeouts.
_TRANSPORT_ERRORS = (aiohttp.ClientError, TimeoutError)


async def complete(
    client: LlmClient,
    *,
    messages: Sequence[ChatMessage],
    model: str,
    temperature: float | None,
    on_delta: Callable[[str, str | None], None] | None = None,
) -> Completion:
    """One whole answer; `on_delta(content, reasoning)` sees each text chunk as it comes."""
    content: list[str] = []
    reasoning: list[str] = []
    usage: TokenUsage | None = None
    # Chunks that arrived together are parsed without a pause, so the run's consumer would
    # send nothing until a whole burst was parsed: after the first chunk, and then whenever
    # PAUSE_EVERY_S passed since the last pause, this lets it send what there is (chunks
    # arriving further apart each get one, which costs a turn of the event loop).
    paused = -math.inf
    stream = client.stream_chat(messages=messages, model=model, temperature=temperature)
    # aclosing: a cancelled node closes the provider's HTTP stream at once, not at GC time.
    async with contextlib.aclosing(stream):
        async for delta in stream:
            if delta.usage is not None:
                usage = delta.usage
                continue
            if delta.reasoning:
                reasoning.append(delta.reasoning)
            content.append(delta.content)
            if on_delta is not None:
                on_delta(delta.content, delta.reasoning)
                if time.perf_counter() - paused > PAUSE_EVERY_S:
                    await asyncio.sleep(0)
                    paused = time.perf_counter()
    return Completion("".join(content), "".join(reasoning) or None, usage)


def add_usage(total: TokenUsage | None, more: Mapping[str, Any] | None) -> TokenUsage | None:
    """`total` plus the counts in `more` (a node's usage); None while nothing was counted."""
    if not more:
        return total

    def both(name: str) -> int:
        counts = (total.get(name, 0) if total else 0, more.get(name, 0))
        return sum(count for count in counts if isinstance(count, int))

    return TokenUsage(
        prompt_tokens=both("prompt_tokens"),
        completion_tokens=both("completion_tokens"),
        reasoning_tokens=both("reasoning_tokens"),
        total_tokens=both("total_tokens"),
    )


def _upstream_failed(reason: str) -> UpstreamFailed:
    # Short and free of secrets: no URL, no headers, no provider body dump.
    return UpstreamFailed(f"LLM provider failed: {reason}")


def _retryable(exc: BaseException) -> bool:
    if isinstance(exc, _Refused):
        return exc.status in RETRY_STATUSES or exc.status >= 500
    return isinstance(exc, _TRANSPORT_ERRORS)


def _backoff(state: RetryCallState) -> float:
    """The wait the provider asked for, when it is short; else BACKOFF."""
    exc = state.outcome.exception() if state.outcome is not None else None
    if isinstance(exc, _Refused):
        asked = _retry_after(exc.headers)
        if asked is not None:
            return asked
    return BACKOFF(state)


def _retry_after(headers: Mapping[str, str]) -> float | None:
    # OpenAI sends retry-after-ms besides the standard header (whose date form is ignored).
    for name, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        try:
            seconds = float(headers[name]) * scale
        except (KeyError, ValueError):
            continue
        if 0 <= seconds <= MAX_BACKOFF_S:
            return seconds
    return None


def _deltas(data: str) -> list[Delta]:
    """The deltas in one chunk (its JSON text)."""
    try:
        chunk = json.loads(data)
        if error := chunk.get("error"):
            # How OpenAI fails a stream whose 200 status is already sent.
            raise _upstream_failed(_error_message(error))
        deltas: list[Delta] = []
        for choice in chunk.get("choices") or ():
            delta = choice.get("delta") or {}
            # Reasoning models (DeepSeek-R1, Qwen, vLLM) send this non-OpenAI field.
            if reasoning := delta.get("reasoning_content"):
                deltas.append(Delta(content="", reasoning=str(reasoning)))
            if content := delta.get("content"):
                deltas.append(Delta(content=str(content)))
        if (usage := chunk.get("usage")) is not None:
            deltas.append(Delta(content="", usage=_token_usage(usage)))
    # Not JSON, or JSON of another shape (a list, a choice that is a string, a count "n/a").
    except (ValueError, TypeError, AttributeError):
        raise _upstream_failed("sent a malformed chunk") from None
    return deltas


def _error_message(error: object) -> str:
    message = error.get("message") if isinstance(error, Mapping) else None
    if not isinstance(message, str) or not message:
        return "an error in the stream"
    if len(message) > _MAX_ERROR_MESSAGE:
        return message[:_MAX_ERROR_MESSAGE] + "..."
    return message


def _token_usage(usage: Mapping[str, Any]) -> TokenUsage:
    prompt = int(usage.get("prompt_tokens") or 0)
    completion = int(usage.get("completion_tokens") or 0)
    details = usage.get("completion_tokens_details") or {}
    return TokenUsage(
        prompt_tokens=prompt,
        completion_tokens=completion,
        reasoning_tokens=int(details.get("reasoning_tokens") or 0),
        total_tokens=int(usage.get("total_tokens") or prompt + completion),
    )


def create_llm_client(
    settings: Settings, *, on_usage: Callable[[str, TokenUsage], None] | None = None
) -> LlmClient | None:
    """The service's LLM client, or None when no provider is configured (llm nodes then fail
    with Unavailable, everything else works). `on_usage(model, usage)` after each call."""
    if not settings.llm_base_url:
        return None
    return OpenAiChat(settings, on_usage=on_usage)
