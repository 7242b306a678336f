"""The Ollama Modelfile: the GGUF, a TEMPLATE equal to the chat template, stop tokens, the training's system prompt."""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from .ollama_template import ChatLayout, special_tokens


@dataclass(frozen=True)
class Modelfile:
    gguf_name: str
    """The GGUF file's name, next to the Modelfile."""
    template: str
    stops: tuple[str, ...]
    system: str | None

    def text(self) -> str:
        """Ollama's parser takes quoted values verbatim (no escapes); the template never holds triple quotes."""
        lines = [f"FROM ./{self.gguf_name}", "", f'TEMPLATE """{self.template}"""', ""]
        lines += [f'PARAMETER stop "{stop}"' for stop in self.stops]
        if self.system is not None:
            lines += ["", f'SYSTEM """{self.system}"""']
        return "\n".join(lines) + "\n"


def stop_sequences(layout: ChatLayout, tokenizer: Any, end_ids: Sequence[int] = ()) -> tuple[str, ...]:
    """The special tokens that end an assistant turn or start the next one, EOS, and the tokens of ``end_ids``.

    Ollama stops on these strings; without them a model that writes its end-of-turn token as
    text would run on into a made-up next turn. ``end_ids`` are the ids the model's generation
    config ends on (Llama 3.1: ``<|eom_id|>`` after a tool call, besides ``<|eot_id|>``).
    """
    specials = special_tokens(tokenizer)
    ending = [t for t in specials if t in layout.suffix["assistant"] + layout.closing]
    starting = [t for t in specials if t in layout.prefix["user"]]
    eos = [tokenizer.eos_token] if tokenizer.eos_token else []
    configured = [t for t in tokenizer.convert_ids_to_tokens(list(end_ids)) if t in specials]
    stops = [s for s in dict.fromkeys(ending + eos + configured + starting) if '"' not in s]
    if not stops and layout.suffix["assistant"].strip():
        stops = [layout.suffix["assistant"].strip()]
    return tuple(stops)


def shared_system_prompt(conversations: list[list[dict[str, str]]]) -> tuple[str | None, str | None]:
    """The system prompt every training conversation starts with, or None and a note saying why not."""
    firsts = [c[0]["content"] if c and c[0]["role"] == "system" else None for c in conversations]
    distinct = set(firsts)
    if not firsts or distinct == {None}:
        return None, None
    if len(distinct) > 1:
        return None, (f"the training conversations use {len(distinct - {None})} different system prompts"
                      f"{' (some none)' if None in distinct else ''}, so the Modelfile sets no SYSTEM; send the "
                      "system message with each request, as in training")
    system = firsts[0]
    if '"""' in system:
        return None, ('the training system prompt contains """, which a Modelfile cannot quote; '
                      "send it with each request")
    return system, None


def ollama_name(run: str) -> str:
    """A model name Ollama accepts: lower case letters, digits, '.', '_' and '-'."""
    return re.sub(r"[^a-z0-9._-]", "-", run.lower())


def create_command(run: str, folder: Path) -> str:
    """The command that registers the folder with Ollama (FROM ./file.gguf resolves next to the Modelfile)."""
    return f"cd {shlex.quote(str(folder))} && ollama create {ollama_name(run)} -f Modelfile"
