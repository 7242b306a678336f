"""Chat with a run: one message answered by the base model and by the fine-tuned one, side by side.

Each exchange stands alone (system prompt + this message), so both systems see exactly the same
prompt and the answers compare like for like; decoding is the same greedy decoding evaluation
uses. A session loads the model once and serves every exchange of a playground.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from ..errors import InvalidValue
from ..runs import Run
from .generate import Generation, generate_timed
from .loading import LoadedRun, load_run

DEFAULT_MAX_NEW_TOKENS = 128
"""Enough for a short answer; generation on CPU takes a few seconds per system at this length."""


@dataclass(frozen=True)
class ChatReply:
    """One exchange: what was asked, and both systems' answers with their generation times."""

    run: str
    system: str
    message: str
    base: str
    fine_tuned: str
    base_seconds: float
    fine_tuned_seconds: float

    def __repr__(self) -> str:
        system = f"system: {self.system}\n" if self.system else ""
        return (f"{system}you: {self.message}\n\nbase ({self.base_seconds:.1f} s):\n{self.base}\n\n"
                f"fine-tuned ({self.fine_tuned_seconds:.1f} s):\n{self.fine_tuned}")


def training_system_prompt(run: Run) -> str:
    """The system prompt that most of the run's training rows share ("" if no prompt has a majority).

    The fine-tuned model learned to answer under that prompt, so a chat without it would not
    show what training changed.
    """
    prompts = Counter(m[0]["content"] if m and m[0]["role"] == "system" else None for m in run.conversations("train"))
    if not prompts:
        return ""
    prompt, count = prompts.most_common(1)[0]
    return prompt if prompt is not None and count * 2 > sum(prompts.values()) else ""


class ChatSession:
    """A run's base model with its adapter, loaded on creation; ``ask`` answers as both systems."""

    def __init__(self, run: Run, *, max_new_tokens: int | None = None):
        run.trained_adapter()
        self.run = run
        self.system = training_system_prompt(run)
        self.max_new_tokens = max_new_tokens or DEFAULT_MAX_NEW_TOKENS
        load_run(run)  # now, so that the first message is not the slow one

    @property
    def loaded(self) -> LoadedRun:
        """The run's model from the kernel's cache (loaded again if something else took its place)."""
        return load_run(self.run)

    def ask(self, message: str, system: str | None = None) -> ChatReply:
        """Both answers to ``message`` under ``system`` (default: the training data's system prompt)."""
        if not message.strip():
            raise InvalidValue("type a message to send")
        system = self.system if system is None else system
        conversation = [{"role": "system", "content": system}] if system else []
        conversation.append({"role": "user", "content": message})
        loaded = self.loaded
        with loaded.model.disable_adapter():
            base = self._answer(loaded, conversation)
        fine_tuned = self._answer(loaded, conversation)
        return ChatReply(self.run.name, system, message, base.answers[0], fine_tuned.answers[0], base.seconds,
                         fine_tuned.seconds)

    def _answer(self, loaded: LoadedRun, conversation: list[dict[str, str]]) -> Generation:
        return generate_timed(loaded.model, loaded.tokenizer, [conversation], max_new_tokens=self.max_new_tokens,
                              batch_size=1)
