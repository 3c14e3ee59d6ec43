"""Conversation templates: LLaVA-1.5 `plain` and `vicuna_v1`, and the LM's own `chat_template`.

    from llava_train.templates import get_template
    t = get_template("vicuna_v1")
    text, spans = t.render(conversations, tokenizer)  # spans: [(start, end), ...] char ranges to learn
    t.jinja(tokenizer)                                 # the chat template saved with the processor

A template turns one LLaVA-1.5 `conversations` list ({"from": "human"|"gpt", "value": ...}) into
the exact text the saved processor produces at inference, plus the character spans of the
assistant turns. `llava_train.data` tokenizes that text once with offsets and labels the tokens
whose last character lies in a span, so labels can never drift from the tokens (the LLaVA-1.5
"tokenization mismatch" that silently zeroed samples cannot happen by construction).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

IMAGE = "<image>"
VICUNA_SYSTEM = (
    "A chat between a curious human and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the human's questions."
)
ROLES = {"human": "user", "gpt": "assistant"}


class TemplateError(ValueError):
    """The conversation does not fit the template (roles out of order, wrong number of turns)."""


def normalize_turns(conversations: list[dict]) -> list[tuple[str, str]]:
    """[(role, text)] with roles user/assistant alternating from user; `<image>` moved to the front
    of its turn as "<image>\n" (what LLaVA-1.5 does, and where the processor templates put it)."""
    turns = []
    for i, turn in enumerate(conversations):
        role = ROLES.get(turn.get("from"))
        if role is None or role != ("user" if i % 2 == 0 else "assistant"):
            raise TemplateError(f"turn {i} has role {turn.get('from')!r}; expected human/gpt alternating")
        value = str(turn.get("value", ""))
        if IMAGE in value:
            n = value.count(IMAGE)
            value = IMAGE + "\n" + value.replace(IMAGE, "").strip()
            value = value if n == 1 else IMAGE * (n - 1) + value  # keep the count; validation rejects it
        turns.append((role, value))
    if len(turns) < 2 or turns[-1][0] != "assistant":
        raise TemplateError("a conversation needs at least one human turn followed by a gpt turn")
    return turns


def _render_plain(conversations, tokenizer):
    # Stage 1 (LLaVA-1.5 `plain`): the image, then the caption; the human text is dropped.
    turns = normalize_turns(conversations)
    if len(turns) != 2:
        raise TemplateError(f"plain needs exactly one human and one gpt turn, got {len(turns)} turns")
    image = IMAGE if IMAGE in turns[0][1] else ""
    caption = turns[1][1] + "\n"
    return image + caption, [(len(image), len(image) + len(caption))]


def _render_vicuna_v1(conversations, tokenizer):
    # "SYSTEM USER: <image>\nQ ASSISTANT: A</s>USER: Q2 ASSISTANT: A2</s>"; learn " A</s>".
    eos = tokenizer.eos_token
    text, spans = VICUNA_SYSTEM, []
    for role, value in normalize_turns(conversations):
        if role == "user":
            text += (" " if not text.endswith(eos) else "") + "USER: " + value + " ASSISTANT:"
        else:
            start = len(text)
            text += " " + value + eos
            spans.append((start, len(text)))
    return text, spans


def _render_chat_template(conversations, tokenizer):
    # The LM's own template; an assistant turn is what rendering it adds after the generation prompt.
    if not tokenizer.chat_template:
        raise TemplateError("the tokenizer has no chat_template")
    messages = [{"role": r, "content": v} for r, v in normalize_turns(conversations)]
    spans = []
    for i, m in enumerate(messages):
        if m["role"] == "assistant":
            start = len(tokenizer.apply_chat_template(messages[:i], tokenize=False, add_generation_prompt=True))
            end = len(tokenizer.apply_chat_template(messages[: i + 1], tokenize=False))
            spans.append((start, end))
    return tokenizer.apply_chat_template(messages, tokenize=False), spans


_CONTENT = (  # message content: a string, or {"type": "image"|"text"} parts with images first
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for part in message['content'] if part['type'] == 'image' %}{{ '<image>\n' }}{% endfor %}"
    "{% for part in message['content'] if part['type'] == 'text' %}{{ part['text'] }}{% endfor %}"
    "{% endif %}"
)


def _jinja_plain(tokenizer) -> str:
    return ("{% for message in messages %}{% if message['role'] == 'user' %}"
            "{% if message['content'] is not string %}"
            "{% for part in message['content'] if part['type'] == 'image' %}{{ '<image>' }}{% endfor %}"
            "{% endif %}{% else %}{{ message['content'] if message['content'] is string "
            "else message['content'][0]['text'] }}{{ '\n' }}{% endif %}{% endfor %}")


def _jinja_vicuna_v1(tokenizer) -> str:
    eos = tokenizer.eos_token
    return (
        "{% set ns = namespace(text='" + VICUNA_SYSTEM.replace("'", "\\'") + "') %}"
        "{{ ns.text }}"
        "{% for message in messages if message['role'] != 'system' %}"
        "{% if message['role'] == 'user' %}{% if loop.first %}{{ ' ' }}{% endif %}{{ 'USER: ' }}"
        + _CONTENT + "{{ ' ASSISTANT:' }}"
        "{% else %}{{ ' ' }}" + _CONTENT + "{{ '" + eos + "' }}{% endif %}"
        "{% endfor %}"
    )


def _jinja_chat_template(tokenizer) -> str:
    return tokenizer.chat_template


@dataclass(frozen=True)
class Template:
    name: str
    render: Callable  # (conversations, tokenizer) -> (text, [(start, end)])
    jinja: Callable   # (tokenizer) -> chat template string for the saved processor


TEMPLATES: dict[str, Template] = {
    "plain": Template("plain", _render_plain, _jinja_plain),
    "vicuna_v1": Template("vicuna_v1", _render_vicuna_v1, _jinja_vicuna_v1),
    "chat_template": Template("chat_template", _render_chat_template, _jinja_chat_template),
}


def get_template(name: str) -> Template:
    if name not in TEMPLATES:
        raise ValueError(f"unknown conversation template {name!r}; known: {', '.join(TEMPLATES)}")
    return TEMPLATES[name]
