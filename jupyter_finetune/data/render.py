"""Render conversations with a model's own chat template, fast.

Jinja rendering of every row is slow on large data sets. Templates lay content out verbatim,
so each conversation *shape* (the sequence of roles) is rendered once with placeholders; the
literal pieces around the placeholders then serve every row of that shape. ``tokens.py``
checks the shortcut against the real template on a sample of rows and falls back per shape.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from ..models.tokenizer import CHATML_TEMPLATE
from .formats import Example

TEXT_SHAPE = ("text",)
_SLOT = re.compile("\ue000(\\d+)\ue001")


@dataclass(frozen=True, slots=True)
class Rendered:
    """The text a model trains on, and the prompt part of it, which carries no loss."""

    full: str
    prompt: str


@dataclass(frozen=True, slots=True)
class Shape:
    """Literal text around the content slots of one sequence of roles."""

    full: tuple[str, ...]
    prompt: tuple[str, ...]

    def fill(self, contents: list[str]) -> Rendered:
        return Rendered(_join(self.full, contents), _join(self.prompt, contents))


@dataclass
class ChatRenderer:
    """Renders Examples as the trainer sees them: prompt, then the final assistant answer."""

    tokenizer: Any
    template: str = ""
    uses_fallback: bool = False
    _shapes: dict[tuple[str, ...], Shape | None] = field(default_factory=dict)

    def __post_init__(self) -> None:
        own = getattr(self.tokenizer, "chat_template", None)
        self.uses_fallback = not (isinstance(own, str) and own)
        self.template = CHATML_TEMPLATE if self.uses_fallback else own

    @staticmethod
    def roles(example: Example) -> tuple[str, ...]:
        return TEXT_SHAPE if example.is_text else tuple(m["role"] for m in example.messages)

    def shape(self, roles: tuple[str, ...]) -> Shape | None:
        """The pieces for these roles, or None where the template does not lay content out verbatim."""
        if roles not in self._shapes:
            self._shapes[roles] = self._make_shape(roles)
        return self._shapes[roles]

    def render(self, example: Example) -> Rendered:
        """Raises whatever the template raises for a conversation it rejects."""
        shape = self.shape(self.roles(example))
        contents = [m["content"] for m in example.messages]
        if shape is not None and all(c == c.strip() for c in contents):
            return shape.fill(contents)
        return self.render_slow(example)

    def render_slow(self, example: Example) -> Rendered:
        if example.is_text:
            return Rendered(example.messages[0]["content"] + (self.tokenizer.eos_token or ""), "")
        messages = example.messages
        return Rendered(self._apply(messages, False), self._apply(messages[:-1], True))

    def _apply(self, messages: list[dict[str, str]], add_generation_prompt: bool) -> str:
        return self.tokenizer.apply_chat_template(
            messages, chat_template=self.template, tokenize=False, add_generation_prompt=add_generation_prompt
        )

    def _make_shape(self, roles: tuple[str, ...]) -> Shape | None:
        if roles == TEXT_SHAPE:
            return Shape(("", self.tokenizer.eos_token or ""), ("",))
        slots = [{"role": r, "content": f"\ue000{i}\ue001"} for i, r in enumerate(roles)]
        try:
            full = _pieces(self._apply(slots, False), len(slots))
            prompt = _pieces(self._apply(slots[:-1], True), len(slots) - 1)
        except Exception:  # a template that rejects this shape is then tried row by row
            return None
        return None if full is None or prompt is None else Shape(full, prompt)


def _pieces(text: str, slots: int) -> tuple[str, ...] | None:
    """Literal text around each placeholder, or None if the template moved or dropped one."""
    parts = _SLOT.split(text)
    if [int(p) for p in parts[1::2]] != list(range(slots)):
        return None
    return tuple(parts[0::2])


def _join(pieces: tuple[str, ...], contents: list[str]) -> str:
    out = [pieces[0]]
    for content, piece in zip(contents, pieces[1:]):
        out.append(content)
        out.append(piece)
    return "".join(out)
