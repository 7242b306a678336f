"""The chat playground: a message box, base and fine-tuned answers in two columns, the exchanges kept.

The widgets hold the latest exchange; below them a plain HTML output (with the same as text) holds
every exchange and is updated after each one, so a saved notebook shows the whole conversation
without widget state.
Where widgets cannot render, ``%ft_chat RUN --message`` returns one ChatReply: its ``repr`` is the
text, and ``ui.display`` registers ``conversation_html`` as its HTML.
"""

from __future__ import annotations

from html import escape
from typing import Any

from ..evaluation.chat import ChatReply, ChatSession
from .env import publish, widget_bundle

_COLUMN = "flex:1;min-width:0;padding:4px 8px;border:1px solid #8884;border-radius:4px"


def answer_html(system: str, answer: str, seconds: float) -> str:
    """One system's answer: a heading with its generation time, the text as written."""
    return (f"<div style='{_COLUMN}'><b>{escape(system)}</b> <small>({seconds:.1f} s)</small>"
            f"<pre style='white-space:pre-wrap;margin:4px 0'>{escape(answer) or '<i>(empty answer)</i>'}</pre></div>")


def exchange_html(reply: ChatReply) -> str:
    """The message (and the system prompt it was sent under) above both answers side by side."""
    system = f"<div style='opacity:.7'><small>system: {escape(reply.system)}</small></div>" if reply.system else ""
    return (f"<div style='margin:6px 0'>{system}<div><b>you:</b> {escape(reply.message)}</div>"
            f"<div style='display:flex;gap:8px'>{answer_html('base', reply.base, reply.base_seconds)}"
            f"{answer_html('fine-tuned', reply.fine_tuned, reply.fine_tuned_seconds)}</div></div>")


def reply_html(reply: ChatReply) -> str:
    """One exchange (``%ft_chat RUN --message``), as the playground records it."""
    return conversation_html([reply])


def conversation_html(replies: list[ChatReply]) -> str:
    """The static record of a playground: every exchange, oldest first ("" before the first)."""
    if not replies:
        return ""
    return (f"<div><b>{escape(replies[0].run)}</b>: base vs fine-tuned, {len(replies)} exchange(s)"
            f"{''.join(exchange_html(r) for r in replies)}</div>")


def conversation_text(replies: list[ChatReply]) -> str:
    """The same record as text: each exchange as its ChatReply prints ("" before the first)."""
    if not replies:
        return ""
    return "\n\n".join([f"{replies[0].run}: base vs fine-tuned, {len(replies)} exchange(s)", *map(repr, replies)])


class ChatPlayground:
    """Widgets around one ChatSession: the model stays loaded for every message sent from here."""

    def __init__(self, session: ChatSession, system: str | None = None):
        """``system`` prefills the system prompt box (default: the session's, from the training data)."""
        import ipywidgets as w

        self.session = session
        self.replies: list[ChatReply] = []
        half = w.Layout(width="50%")
        self.ui: dict[str, Any] = {
            "header": w.HTML(f"<b>Chat with {escape(session.run.name)}</b>: each message goes to the base model "
                             "and to the fine-tuned one, with the same system prompt"),
            "system": w.Textarea(value=session.system if system is None else system, description="system",
                                 layout=w.Layout(width="100%")),
            "message": w.Textarea(placeholder="Type a message", description="message", layout=w.Layout(width="100%")),
            "send": w.Button(description="Send", icon="paper-plane", button_style="primary"),
            "status": w.HTML(),
            "base": w.HTML(layout=half),
            "fine_tuned": w.HTML(layout=half),
        }
        self.ui["send"].on_click(self.send)
        self.ui["row"] = w.HBox([self.ui["send"], self.ui["status"]])
        self.ui["answers"] = w.HBox([self.ui["base"], self.ui["fine_tuned"]])
        self.ui["box"] = w.VBox([self.ui["header"], self.ui["system"], self.ui["message"], self.ui["row"],
                                 self.ui["answers"]])
        self._record: Any = None

    def show(self) -> "ChatPlayground":
        """Display the widgets and, below them, the (for now empty) record of the conversation."""
        publish(widget_bundle(self.ui["box"], f"Chat playground of {self.session.run.name}: a widget, live while "
                                              "the kernel runs; every exchange is recorded below"))
        self._record = publish(self._record_bundle(), display_id=True)  # None outside IPython
        return self

    def static_html(self) -> str:
        return conversation_html(self.replies)

    def _record_bundle(self) -> dict[str, str]:
        return {"text/plain": conversation_text(self.replies), "text/html": self.static_html()}

    def send(self, _button: Any = None) -> ChatReply | None:
        """Send the message box to both systems; the Send button calls this."""
        ui = self.ui
        if not ui["message"].value.strip():
            ui["status"].value = "type a message first"
            return None
        ui["send"].disabled, ui["status"].value = True, "generating…"
        try:
            reply = self.session.ask(ui["message"].value, ui["system"].value)
        except Exception as exc:  # a callback's exception is invisible in the notebook: show it, then raise
            ui["status"].value = f"<span style='color:#c62828'>{escape(f'{type(exc).__name__}: {exc}')}</span>"
            raise
        finally:
            ui["send"].disabled = False
        self.replies.append(reply)
        ui["base"].value = answer_html("base", reply.base, reply.base_seconds)
        ui["fine_tuned"].value = answer_html("fine-tuned", reply.fine_tuned, reply.fine_tuned_seconds)
        ui["message"].value, ui["status"].value = "", ""
        if self._record is not None:
            publish(self._record_bundle(), handle=self._record)
        return reply
