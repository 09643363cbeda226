"""The LLM seam: what an llm node needs from a provider, and the OpenAI-compatible client."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol, TypedDict, cast

import openai
from openai.types.chat import ChatCompletionMessageParam

from flowport.errors import Unavailable, UpstreamFailed
from flowport.settings import Settings

NO_PROVIDER = "no LLM provider configured: set FLOWPORT_LLM_BASE_URL"


class ChatMessage(TypedDict):
    role: Literal["system", "user", "assistant"]
    content: str


@dataclass(frozen=True, slots=True)
class Delta:
    """One streamed chunk: answer text, or reasoning text (then content is "")."""

    content: str
    reasoning: str | None = None


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


def create_llm_client(settings: Settings) -> LlmClient | None:
    """The service's LLM client, or None when no provider is configured (llm nodes then fail
    with Unavailable, everything else works)."""
    if not settings.llm_base_url:
        return None
    return OpenAiChat(settings)
