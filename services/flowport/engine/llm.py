"""The LLM seam: what an llm node needs from a provider, and the OpenAI-compatible client."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol, TypedDict, cast

import openai
from openai.types import CompletionUsage
from openai.types.chat import ChatCompletionMessageParam

from flowport.errors import Unavailable, UpstreamFailed
from flowport.settings import Settings

NO_PROVIDER = "no LLM provider configured: set FLOWPORT_LLM_BASE_URL"


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
    """An OpenAI-compatible provider (OpenAI, DeepSeek, vLLM, Ollama, ...) via the openai package.

    One per service: it holds the connection pool.
    """

    def __init__(self, settings: Settings, *, max_retries: int = 2) -> None:
        if not settings.llm_base_url:
            raise Unavailable(NO_PROVIDER)
        self._timeout_s = settings.llm_timeout_s
        self._client = openai.AsyncOpenAI(
            base_url=settings.llm_base_url,
            # Local providers need no key, but the client insists on one; an explicit
            # placeholder also keeps it from sending an OPENAI_API_KEY found in the
            # environment to a provider it was not meant for.
            api_key=settings.llm_api_key or "unused",
            # httpx applies it to each read, so a stream may run longer as long as
            # chunks keep coming.
            timeout=settings.llm_timeout_s,
            max_retries=max_retries,
        )

    async def stream_chat(
        self, *, messages: Sequence[ChatMessage], model: str, temperature: float | None
    ) -> AsyncGenerator[Delta, None]:
        try:
            stream = await self._client.chat.completions.create(
                model=model,
                # Each ChatMessage is one of the SDK's message TypedDicts.
                messages=cast(list[ChatCompletionMessageParam], list(messages)),
                stream=True,
                # The last chunk then carries the call's token usage.
                stream_options={"include_usage": True},
                # Unset rather than null: some providers reject "temperature": null.
                temperature=openai.omit if temperature is None else temperature,
            )
            # Leaving the block (finished, failed or cancelled) closes the HTTP response.
            async with stream:
                async for chunk in stream:
                    for choice in chunk.choices:
                        delta = choice.delta
                        # Reasoning models (DeepSeek-R1, Qwen, vLLM) send this
                        # non-OpenAI field, which the SDK keeps as an extra attribute.
                        reasoning = getattr(delta, "reasoning_content", None)
                        if reasoning:
                            yield Delta(content="", reasoning=str(reasoning))
                        if delta.content:
                            yield Delta(content=delta.content)
                    if chunk.usage is not None:
                        yield Delta(content="", usage=_token_usage(chunk.usage))
        except openai.APIError as exc:
            raise UpstreamFailed(f"LLM provider failed: {self._reason(exc)}") from None

    async def aclose(self) -> None:
        await self._client.close()

    def _reason(self, exc: openai.APIError) -> str:
        # Short and free of secrets: no request headers, no URL, no provider body dump.
        if isinstance(exc, openai.APITimeoutError):
            return f"timed out after {self._timeout_s:g}s"
        if isinstance(exc, openai.APIConnectionError):
            return "could not connect"
        if isinstance(exc, openai.APIStatusError):
            return f"HTTP {exc.status_code} {exc.response.reason_phrase}".rstrip()
        return type(exc).__name__


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


def _token_usage(usage: CompletionUsage) -> TokenUsage:
    details = usage.completion_tokens_details
    reasoning = details.reasoning_tokens if details is not None else None
    return TokenUsage(
        prompt_tokens=usage.prompt_tokens,
        completion_tokens=usage.completion_tokens,
        reasoning_tokens=reasoning or 0,
        total_tokens=usage.total_tokens or usage.prompt_tokens + usage.completion_tokens,
    )


def create_llm_client(settings: Settings) -> LlmClient | None:
    """The service's LLM client, or None when no provider is configured (llm nodes then fail
    with Unavailable, everything else works)."""
    if not settings.llm_base_url:
        return None
    return OpenAiChat(settings)
