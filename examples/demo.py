"""`make demo`: the data step of the quickstart on the packaged SmolLM2, printed as text.

Training and the base-vs-tuned table join this script when %ft_train and %ft_eval land.
"""

from __future__ import annotations

from pathlib import Path

import jupyter_finetune as ft
from jupyter_finetune.ui.data_report import report_text

DATA = Path(__file__).parent / "data" / "tickets.jsonl"


def main() -> None:
    tickets = ft.load_data("tickets", DATA, split=0.1, seed=0)
    print(report_text(tickets))
    print("\nWhat training sees for the first example ([...] carries loss):")
    print("".join(f"[{t.text}]" if t.carries_loss else t.text for t in tickets.preview(0)))


if __name__ == "__main__":
    main()
