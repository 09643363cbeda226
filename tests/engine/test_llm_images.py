"""Image inputs reach the model as image parts of the user message (OpenAI's vision format)."""

from __future__ import annotations

from tests.engine.builders import chain, compiled, run_all, succeeded
from tests.fakes.fake_llm import FakeLlm

IMAGE_INPUTS = [
    {"name": "question", "type": "text"},
    {"name": "photo", "type": "image"},
]
CAT = "https://example.com/cat.png"


def _asked(fake: FakeLlm) -> object:
    return fake.requests[-1]["messages"][-1]["content"]


async def test_every_image_input_goes_with_the_prompt_by_default(llm, fake_llm: FakeLlm) -> None:
    workflow = compiled(
        chain(
            {"id": "ask", "type": "llm", "prompt": "{{ question }}"},
            {"id": "end", "type": "out", "output": "{{ ask.output }}"},
            inputs=IMAGE_INPUTS,
        )
    )

    succeeded(await run_all(workflow, {"question": "what is it?", "photo": CAT}, llm=llm))

    assert _asked(fake_llm) == [
        {"type": "text", "text": "what is it?"},
        {"type": "image_url", "image_url": {"url": CAT}},
    ]


async def test_without_an_image_the_prompt_stays_plain_text(llm, fake_llm: FakeLlm) -> None:
    workflow = compiled(
        chain(
            {"id": "ask", "type": "llm", "prompt": "{{ question }}"},
            {"id": "end", "type": "out", "output": "{{ ask.output }}"},
            inputs=IMAGE_INPUTS,
        )
    )

    succeeded(await run_all(workflow, {"question": "hello"}, llm=llm))

    assert _asked(fake_llm) == "hello"


async def test_images_can_be_chosen_by_template(llm, fake_llm: FakeLlm) -> None:
    workflow = compiled(
        chain(
            {
                "id": "ask",
                "type": "llm",
                "prompt": "compare",
                "images": ["{{ photo }}", "https://example.com/{{ question }}.png"],
            },
            {"id": "end", "type": "out", "output": "{{ ask.output }}"},
            inputs=IMAGE_INPUTS,
        )
    )

    succeeded(await run_all(workflow, {"question": "dog", "photo": CAT}, llm=llm))

    assert _asked(fake_llm) == [
        {"type": "text", "text": "compare"},
        {"type": "image_url", "image_url": {"url": CAT}},
        {"type": "image_url", "image_url": {"url": "https://example.com/dog.png"}},
    ]
