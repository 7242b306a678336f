"""An Ollama TEMPLATE (Go text/template) that prompts the model exactly as its Jinja chat template does.

Most chat templates (ChatML as in SmolLM2 and Qwen, Llama 3, Phi-3/4, Gemma, Mistral) lay each
message out as ``prefix(role) + content + suffix(role)``, with optional text before the first
message, a default system message when the conversation has none, a generation prompt after a
final user message and closing text (an EOS) after a final assistant message. Some vary this:
Qwen3 opens a final assistant message with an empty ``<think>`` block; Gemma 3 writes the system
prompt inside the first user turn and Mistral Nemo/v0.3 inside the final user message (and
nowhere when the conversation ends with the assistant); Gemma 2 accepts no system prompt.
Rendering the template on a few conversations with placeholder contents recovers those pieces;
the Go template is built from them and then checked against the Jinja template on sample
conversations. A template that does not fit (one that changes content, or places the system
prompt elsewhere) is refused with a message, never approximated.

What the check cannot see: Llama 3 and Gemma trim whitespace around each content (Go templates
cannot), so the TEMPLATE matches for contents without leading or trailing whitespace; a date the
template writes (Llama 3.2's "Today Date") is the export day's; assistant messages holding
reasoning (Qwen3's ``<think>``) are written as they are, not re-split.
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
    (("user", "Hi"), ("assistant", "Hello!"), ("user", "A joke?"), ("assistant", "Later.")),
    (("system", "Be brief."), ("user", "Name a colour."), ("assistant", "Blue."), ("user", "Another one?")),
    (("system", "Be brief."), ("user", "First line\nsecond line"), ("assistant", '{"ok": true}')),
)
_LAST = "{{ $last := eq (len (slice $.Messages $i)) 1 }}"


class _NotLayout(Exception):
    """The chat template does not lay messages out as prefix + content + suffix."""


class _Rejected(_NotLayout):
    """The chat template raised on a conversation (e.g. Gemma 2 on a system message)."""


@dataclass(frozen=True)
class ChatLayout:
    """A chat template reduced to literal pieces around each message's content."""

    begin: str
    """Text before the first message (e.g. a BOS token the template writes)."""
    default_system: str
    """Written before the first message when that message is not a system message."""
    prefix: dict[str, str]
    suffix: dict[str, str]
    """By role; for a system prompt inside a user turn, the text around it there."""
    generation: str
    """The generation prompt (``add_generation_prompt``), written after a final non-assistant message."""
    closing: str = ""
    """Written after a final assistant message (Phi's EOS)."""
    final_assistant: str | None = None
    """The prefix of an assistant message that ends the conversation, where it differs (Qwen3's empty think block)."""
    system_place: str = "turn"
    """Where the system prompt (the first message) goes: its own ``turn``, inside the ``first_user`` turn, inside
    the ``last_user`` message when the conversation ends with it, or ``none`` (the template refuses one). Where it
    is no turn, later system messages are left out (Gemma 2 and Mistral refuse them; Gemma 3 would write a turn)."""
    trims: bool = False
    """The template strips whitespace around each content (Llama 3, Gemma), which a Go template cannot do."""

    def notes(self) -> tuple[str, ...]:
        """What the TEMPLATE cannot do as the chat template does, for the export's notes."""
        return ("the chat template strips spaces and newlines around each message and Ollama's TEMPLATE cannot; "
                "send messages without leading or trailing whitespace to prompt the model as in training",
                ) if self.trims else ()

    def go_template(self) -> str:
        """One Go template: every message closed, then the generation prompt or the closing text after the last."""
        parts = [_literal(self.begin)]
        if self._inline:
            parts.append('{{ $system := "" }}{{ $hasSystem := false }}')
        parts += ["{{ range $i, $m := .Messages }}", _LAST]
        if self.default_system:
            parts += ['{{ if and (eq $i 0) (ne $m.Role "system") }}', _literal(self.default_system), "{{ end }}"]
        message = self._prefix() + "{{ $m.Content }}" + _by_role(self._turns(self.suffix))
        if self.system_place == "turn":
            parts.append(message)
        else:
            keep = "{{ if eq $i 0 }}{{ $system = $m.Content }}{{ $hasSystem = true }}{{ end }}" if self._inline else ""
            parts += ['{{ if eq $m.Role "system" }}', keep, "{{ else }}", message, "{{ end }}"]
        parts += [_when('and $last (ne $m.Role "assistant")', self.generation),
                  _when('and $last (eq $m.Role "assistant")', self.closing), "{{ end }}"]
        return "".join(parts)

    @property
    def _inline(self) -> bool:
        return self.system_place in ("first_user", "last_user")

    def _turns(self, texts: dict[str, str]) -> dict[str, str]:
        """The texts around a message; where the system prompt is no turn, a system message never gets them."""
        return texts if self.system_place == "turn" else {**texts, "system": texts["user"]}

    def _prefix(self) -> str:
        text = _by_role(self._turns(self.prefix))
        if self.final_assistant is not None:
            text = ('{{ if and $last (eq $m.Role "assistant") }}' + _literal(self.final_assistant) + "{{ else }}"
                    + text + "{{ end }}")
        if self._inline:
            host = "(eq $i 1)" if self.system_place == "first_user" else "$last"
            text += (f'{{{{ if and $hasSystem {host} (eq $m.Role "user") }}}}' + _literal(self.prefix["system"])
                     + "{{ $system }}" + _literal(self.suffix["system"]) + "{{ end }}")
        return text


def chat_layout(tokenizer: Any) -> ChatLayout:
    """The layout of the tokenizer's chat template, checked on sample conversations."""
    try:
        layout = _derive(tokenizer)
    except _NotLayout as exc:
        raise ExportError(_refusal(str(exc))) from None
    template = layout.go_template()
    for turns in _SAMPLES:
        if layout.system_place == "none" and turns[0][0] == "system":
            continue  # the chat template refuses these; so would training
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
        texts, order = _placed(tokenizer, roles, generation)
        if order != list(range(len(roles))):
            raise _NotLayout("it does not write each message's content once, in order")
        return texts

    specials = special_tokens(tokenizer)
    head_user, tail_user = pieces(("user",), generation=True)
    _, tail_user_plain = pieces(("user",))
    _, final_user_assistant, tail_assistant = pieces(("user", "assistant"))
    _, user_assistant, assistant_user, _ = pieces(("user", "assistant", "user"), generation=True)
    suffix_user = _common_start(specials, tail_user_plain, tail_user, user_assistant, final_user_assistant)
    suffix_assistant = _common_start(specials, tail_assistant, assistant_user)
    prefix_user = assistant_user[len(suffix_assistant):]
    prefix_assistant = user_assistant[len(suffix_user):]
    final_assistant = final_user_assistant[len(suffix_user):]
    begin, default_system, system_prefix, system_suffix, place = _system(tokenizer, head_user, prefix_user)
    return ChatLayout(begin, default_system,
                      {"system": system_prefix, "user": prefix_user, "assistant": prefix_assistant},
                      {"system": system_suffix, "user": suffix_user, "assistant": suffix_assistant},
                      tail_user[len(suffix_user):], tail_assistant[len(suffix_assistant):],
                      final_assistant if final_assistant != prefix_assistant else None, place, _trims(tokenizer))


def _system(tokenizer: Any, head_user: str, prefix_user: str) -> tuple[str, str, str, str, str]:
    """begin, default system text, the text before and after the system prompt, and where it goes."""
    before_user = _before(head_user, prefix_user, "first user turn")
    try:
        texts, order = _placed(tokenizer, ("system", "user"), True)
    except _Rejected:
        return before_user, "", "", "", "none"
    if order != [0, 1]:
        raise _NotLayout("it does not write the system prompt before the first user message")
    head_system, between, _ = texts
    if between.endswith(prefix_user):  # a turn of its own
        prefix_system = prefix_user.replace("user", "system") if prefix_user.count("user") == 1 else ""
        if not head_system.endswith(prefix_system):
            prefix_system = ""
        begin = head_system[:len(head_system) - len(prefix_system)]
        default_system = _after(before_user, begin, "conversation start")
        return begin, default_system, prefix_system, between[:len(between) - len(prefix_user)], "turn"
    system_prefix = _after(head_system, before_user + prefix_user, "system prompt inside the first user turn")
    _, order = _placed(tokenizer, ("system", "user", "assistant", "user"), True)
    places = {(0, 1, 2, 3): "first_user", (1, 2, 0, 3): "last_user"}
    if tuple(order) not in places:
        raise _NotLayout("it writes the system prompt inside a user turn other than the first or the last")
    return before_user, "", system_prefix, between, places[tuple(order)]


def _trims(tokenizer: Any) -> bool:
    """Whether the template drops the spaces and newline around a content (Jinja's ``trim``)."""
    padded = " \ue0000\ue001\n"
    return padded not in tokenizer.apply_chat_template([{"role": "user", "content": padded}], tokenize=False,
                                                       add_generation_prompt=True)


def _placed(tokenizer: Any, roles: tuple[str, ...], generation: bool) -> tuple[list[str], list[int]]:
    """The template's text around placeholder contents, and the order the contents come in."""
    messages = [{"role": r, "content": f"\ue000{i}\ue001"} for i, r in enumerate(roles)]
    try:
        text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation)
    except Exception as exc:  # a template may reject a conversation shape with any exception type
        raise _Rejected(f"it rejects a {'/'.join(roles)} conversation ({exc})") from None
    parts = _SLOT.split(text)
    return parts[0::2], [int(p) for p in parts[1::2]]


def special_tokens(tokenizer: Any) -> list[str]:
    """The tokenizer's special tokens, named ones and added ones marked special."""
    return list(dict.fromkeys([*tokenizer.all_special_tokens,
                               *(t.content for t in tokenizer.added_tokens_decoder.values() if t.special)]))


def _common_start(specials: list[str], *texts: str) -> str:
    """The longest text all of them start with, not ending inside a special token: where a turn's own end stops
    and what follows begins (``<|end|>`` before ``<|user|>`` or ``<|endoftext|>``, not ``<|end|><|``)."""
    end = next((i for i, chars in enumerate(zip(*texts)) if len(set(chars)) > 1), min(map(len, texts)))
    cut = True
    while cut:
        cut = [p for text in texts for token in specials
               if 0 <= (p := text.find(token, max(0, end - len(token) + 1))) < end < p + len(token)]
        end = min(cut, default=end)
    return texts[0][:end]


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
    if texts["system"] == user:
        return ('{{ if eq $m.Role "assistant" }}' + _literal(texts["assistant"]) + "{{ else }}" + _literal(user)
                + "{{ end }}")
    return ('{{ if eq $m.Role "system" }}' + _literal(texts["system"]) + '{{ else if eq $m.Role "assistant" }}'
            + _literal(texts["assistant"]) + "{{ else }}" + _literal(texts["user"]) + "{{ end }}")


def _when(condition: str, text: str) -> str:
    return f"{{{{ if {condition} }}}}{_literal(text)}{{{{ end }}}}" if text else ""


def _literal(text: str) -> str:
    """A literal as template text, or as a Go string where it would read as an action or end the Modelfile quote."""
    if "{{" in text or '"""' in text:
        return "{{ " + json.dumps(text, ensure_ascii=False) + " }}"
    return text


def _refusal(reason: str) -> str:
    return ("this model's chat template cannot be written as an Ollama TEMPLATE that renders the same prompts "
            f"({reason}). Export --to gguf and write the Modelfile's TEMPLATE by hand "
            "(https://github.com/ollama/ollama/blob/main/docs/template.md)")
