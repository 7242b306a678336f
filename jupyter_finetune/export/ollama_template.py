"""An Ollama TEMPLATE (Go text/template) that prompts the model exactly as its Jinja chat template does.

Most chat templates (ChatML as in SmolLM2 and Qwen2, Llama 3, Phi-3, ...) lay each message out
as ``prefix(role) + content + suffix(role)``, with optional text before the first message, a
default system message when the conversation has none, and a generation prompt. Rendering the
template on a few conversations with placeholder contents recovers those pieces; the Go
template is built from them and then checked against the Jinja template on sample
conversations. A template that does not fit (one that merges the system prompt into the first
user turn, or changes content) is refused with a message, never approximated.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from .gotemplate import GoTemplateError, render
from .result import ExportError

ROLES = ("system", "user", "assistant")
_SLOT = re.compile("\ue000(\\d+)\ue001")
_SAMPLES = (  # (role, content) turns; each conversation is rendered with and without a generation prompt
    (("user", "What is 2 + 2?"),),
    (("system", "You sort tickets.\nAnswer in JSON."), ("user", "Printer broken, case 42.")),
    (("user", "Hi"), ("assistant", "Hello! How can I help?"), ("user", "Tell me a joke.")),
    (("system", "Be brief."), ("user", "Name a colour."), ("assistant", "Blue."), ("user", "Another one?")),
    (("system", "Be brief."), ("user", "First line\nsecond line"), ("assistant", '{"ok": true}')),
)


class _NotLayout(Exception):
    """The chat template does not lay messages out as prefix + content + suffix."""


@dataclass(frozen=True)
class ChatLayout:
    """A chat template reduced to literal pieces around each message's content."""

    begin: str
    """Text before the first message (e.g. a BOS token the template writes)."""
    default_system: str
    """Written before the first message when that message is not a system message."""
    prefix: dict[str, str]
    suffix: dict[str, str]
    generation: str
    """The generation prompt (``add_generation_prompt``), written after a final non-assistant message."""

    def go_template(self) -> str:
        """One Go template: every message closed, then the generation prompt unless the last turn is the assistant's."""
        parts = [_literal(self.begin), "{{ range $i, $m := .Messages }}"]
        if self.default_system:
            parts += ['{{ if and (eq $i 0) (ne $m.Role "system") }}', _literal(self.default_system), "{{ end }}"]
        parts += [_by_role(self.prefix), "{{ $m.Content }}", _by_role(self.suffix)]
        if self.generation:
            parts += ['{{ if and (eq (len (slice $.Messages $i)) 1) (ne $m.Role "assistant") }}',
                      _literal(self.generation), "{{ end }}"]
        parts.append("{{ end }}")
        return "".join(parts)


def chat_layout(tokenizer: Any) -> ChatLayout:
    """The layout of the tokenizer's chat template, checked on sample conversations."""
    try:
        layout = _derive(tokenizer)
    except _NotLayout as exc:
        raise ExportError(_refusal(str(exc))) from None
    template = layout.go_template()
    for turns in _SAMPLES:
        messages = [{"role": r, "content": c} for r, c in turns]
        expected = tokenizer.apply_chat_template(messages, tokenize=False,
                                                 add_generation_prompt=messages[-1]["role"] != "assistant")
        try:
            got = render_ollama(template, messages)
        except GoTemplateError as exc:
            raise ExportError(_refusal(f"the derived template does not render: {exc}")) from None
        if got != expected:
            raise ExportError(_refusal(f"for roles {'/'.join(r for r, _ in turns)} it would render {got!r} "
                                       f"where the chat template renders {expected!r}"))
    return layout


def render_ollama(template: str, messages: list[dict[str, str]]) -> str:
    """Render a TEMPLATE the way Ollama executes it for /api/chat (messages as Role/Content, System joined)."""
    system = "\n\n".join(m["content"] for m in messages if m["role"] == "system")
    values = [{"Role": m["role"], "Content": m["content"]} for m in messages]
    return render(template, {"System": system, "Messages": values, "Response": "", "Tools": None})


def _derive(tokenizer: Any) -> ChatLayout:
    def pieces(roles: tuple[str, ...], generation: bool = False) -> list[str]:
        messages = [{"role": r, "content": f"\ue000{i}\ue001"} for i, r in enumerate(roles)]
        try:
            text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation)
        except Exception as exc:  # a template may reject a conversation shape with any exception type
            raise _NotLayout(f"it rejects a {'/'.join(roles)} conversation ({exc})") from None
        parts = _SLOT.split(text)
        if [int(p) for p in parts[1::2]] != list(range(len(roles))):
            raise _NotLayout("it does not write each message's content once, in order")
        return parts[0::2]

    head_user, suffix_user = pieces(("user",))
    prefix_assistant = _after(pieces(("user", "assistant"))[1], suffix_user, "user turn followed by assistant")
    suffix_assistant = pieces(("user", "assistant"))[2]
    prefix_user = _after(pieces(("user", "assistant", "user"))[2], suffix_assistant, "assistant turn followed by user")
    head_system, between, _ = pieces(("system", "user"))
    suffix_system = _before(between, prefix_user, "system turn followed by user")
    prefix_system = prefix_user.replace("user", "system") if prefix_user.count("user") == 1 else ""
    if not head_system.endswith(prefix_system):
        prefix_system = ""
    begin = head_system[:len(head_system) - len(prefix_system)]
    default_system = _after(_before(head_user, prefix_user, "first user turn"), begin, "conversation start")
    full, with_prompt = "".join(pieces(("user",))), "".join(pieces(("user",), generation=True))
    generation = _after(with_prompt, full, "generation prompt")
    return ChatLayout(begin, default_system, {"system": prefix_system, "user": prefix_user,
                                              "assistant": prefix_assistant},
                      {"system": suffix_system, "user": suffix_user, "assistant": suffix_assistant}, generation)


def _after(text: str, start: str, where: str) -> str:
    if not text.startswith(start):
        raise _NotLayout(f"the text around the {where} is not the same from one conversation to the next")
    return text[len(start):]


def _before(text: str, end: str, where: str) -> str:
    if not text.endswith(end):
        raise _NotLayout(f"the text around the {where} is not the same from one conversation to the next")
    return text[:len(text) - len(end)]


def _by_role(texts: dict[str, str]) -> str:
    """Literal text that depends on the message's role, as compact as the texts allow."""
    if len(set(texts.values())) == 1:
        return _literal(texts["user"])
    user = texts["user"]
    if user.count("user") == 1 and all(texts[r] == user.replace("user", r) for r in ROLES):
        before, after = user.split("user")
        return _literal(before) + "{{ $m.Role }}" + _literal(after)
    return ('{{ if eq $m.Role "system" }}' + _literal(texts["system"]) + '{{ else if eq $m.Role "assistant" }}'
            + _literal(texts["assistant"]) + "{{ else }}" + _literal(texts["user"]) + "{{ end }}")


def _literal(text: str) -> str:
    """A literal as template text, or as a Go string where it would read as an action or end the Modelfile quote."""
    if "{{" in text or '"""' in text:
        return "{{ " + json.dumps(text, ensure_ascii=False) + " }}"
    return text


def _refusal(reason: str) -> str:
    return ("this model's chat template cannot be written as an Ollama TEMPLATE that renders the same prompts "
            f"({reason}). Export --to gguf and write the Modelfile's TEMPLATE by hand "
            "(https://github.com/ollama/ollama/blob/main/docs/template.md)")
