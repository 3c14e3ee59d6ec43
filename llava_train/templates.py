"""Conversation templates: LLaVA-1.5 `plain`, `vicuna_v1` (and `llava_v1`), and the LM's own `chat_template`.

    from llava_train.templates import get_template
    t = get_template("vicuna_v1")
    text, spans = t.render(turns, tokenizer)  # turns: [(role, text)]; spans: [(start, end)] char ranges to learn
    t.jinja(tokenizer)                         # the chat template saved with the processor

`turns` are the normalized turns of one LLaVA-1.5 `conversations` list (`llava_train.samples`
applies LLaVA-1.5's data semantics first: leading gpt turn dropped, `<image>` moved to the front of
its turn followed by "\n"). A template renders the exact text LLaVA-1.5's `Conversation.get_prompt()`
renders, plus the character spans to learn; the saved chat template renders the same text at
inference. `llava_train.samples` tokenizes the text once with offsets and labels the tokens whose
last character lies in a span, so labels can never drift from the tokens (the LLaVA-1.5
"tokenization mismatch" that silently zeroed samples cannot happen by construction).

The facts, from haotian-liu/LLaVA `llava/conversation.py` (separator style TWO, sep " ", sep2 "</s>"):
- `vicuna_v1` (`conv_vicuna_v1`, what the v1.5 scripts' `--version v1` and eval's `--conv-mode
  vicuna_v1` use): system "A chat between a curious user and an artificial intelligence assistant.
  The assistant gives helpful, detailed, and polite answers to the user's questions." then " ";
  each user turn "USER: " + text + " "; each assistant turn "ASSISTANT: " + text + "</s>"; the
  generation prompt ends in "ASSISTANT:". Learned: all that follows the generation prompt, i.e. " " +
  the assistant text + "</s>". LLaVA-1.5 masks by token count and learns Llama's "▁Yes", which carries
  the separator space; a byte-level BPE that splits " Yes" into a bare "Ġ" and "Yes" must learn the
  "Ġ" too, or the model never learns to start such an answer.
- `llava_v1` (`conv_llava_v1`): the same, with "curious human ... the human's questions".
- `plain` (`conv_llava_plain`, stage 1): "<image>" + caption + "\n"; learned: caption + "\n".
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from clips_tower.io import lookup

IMAGE = "<image>"
VICUNA_V1_SYSTEM = (
    "A chat between a curious user and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the user's questions."
)
LLAVA_V1_SYSTEM = (
    "A chat between a curious human and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the human's questions."
)


class TemplateError(ValueError):
    """The conversation does not fit the template (e.g. `plain` with more than one exchange)."""


def _render_plain(turns, tokenizer):
    # Stage 1 (LLaVA-1.5 `plain`): the image, then the caption; the human text is dropped.
    if len(turns) != 2:
        raise TemplateError(f"plain needs exactly one human and one gpt turn, got {len(turns)} turns")
    image = IMAGE if IMAGE in turns[0][1] else ""
    caption = turns[1][1] + "\n"
    return image + caption, [(len(image), len(image) + len(caption))]


def _sep_two(system: str):
    """LLaVA's SeparatorStyle.TWO with roles USER/ASSISTANT, sep " " and sep2 = the LM's eos ("</s>")."""
    def render(turns, tokenizer):
        eos = tokenizer.eos_token
        text, spans = system + " ", []
        for role, value in turns:
            if role == "user":
                text += "USER: " + value + " "
            else:
                text += "ASSISTANT:"
                start = len(text)  # the generation prompt ends here: all that follows is generated
                text += " " + value + eos
                spans.append((start, len(text)))
        return text, spans

    def jinja(tokenizer) -> str:
        eos = tokenizer.eos_token.replace("'", "\\'")
        return (
            "{% set ns = namespace(system='" + system.replace("'", "\\'") + "') %}"
            "{% if messages and messages[0]['role'] == 'system' and messages[0]['content'] is string %}"
            "{% set ns.system = messages[0]['content'] %}{% endif %}"
            "{{ ns.system }}{{ ' ' }}"
            "{% for message in messages if message['role'] != 'system' %}"
            "{% if message['role'] == 'user' %}{{ 'USER: ' }}" + _CONTENT + "{{ ' ' }}"
            "{% else %}{{ 'ASSISTANT: ' }}" + _CONTENT + "{{ '" + eos + "' }}{% endif %}"
            "{% endfor %}"
            "{% if add_generation_prompt %}{{ 'ASSISTANT:' }}{% endif %}"
        )
    return render, jinja


def _render_chat_template(turns, tokenizer):
    # The LM's own template; an assistant turn is what rendering it adds after the generation prompt.
    if not tokenizer.chat_template:
        raise TemplateError("the tokenizer has no chat_template")
    messages = [{"role": r, "content": v} for r, v in turns]
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
            "{% endif %}{% elif message['role'] == 'assistant' %}{{ message['content'] if message['content'] "
            "is string else message['content'][0]['text'] }}{{ '\n' }}{% endif %}{% endfor %}")


def _jinja_chat_template(tokenizer) -> str:
    return tokenizer.chat_template


@dataclass(frozen=True)
class Template:
    name: str
    render: Callable  # (turns, tokenizer) -> (text, [(start, end)])
    jinja: Callable   # (tokenizer) -> chat template string for the saved processor


TEMPLATES: dict[str, Template] = {
    "plain": Template("plain", _render_plain, _jinja_plain),
    "vicuna_v1": Template("vicuna_v1", *_sep_two(VICUNA_V1_SYSTEM)),
    "llava_v1": Template("llava_v1", *_sep_two(LLAVA_V1_SYSTEM)),
    "chat_template": Template("chat_template", _render_chat_template, _jinja_chat_template),
}


def get_template(name: str) -> Template:
    return lookup(TEMPLATES, name, "conversation template")
