"""`make demo`: run the two example notebooks headless on the packaged SmolLM2 and print what they show.

quickstart.ipynb is a format task (support tickets to JSON), where the comparison recommends
fine-tuning; rag_or_finetune.ipynb is a facts task (questions about a shop's help pages), where it
recommends RAG. Each executed notebook is written beside it as NAME.out.ipynb (ignored by git).
"""

from __future__ import annotations

import html
import re
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

HERE = Path(__file__).parent


def output_text(output: dict) -> str:
    if output.get("output_type") == "stream":
        return output.get("text", "")
    if output.get("output_type") == "error":
        return f"{output.get('ename')}: {output.get('evalue')}\n"
    data = output.get("data", {})
    if "application/vnd.jupyter.widget-view+json" in data:
        return ""  # live widgets; their static record follows as HTML
    if "text/html" in data:
        text = re.sub(r"<(style|script)[^>]*>.*?</\1>", "", data["text/html"], flags=re.S)
        text = re.sub(r"</(tr|p|h4|div|summary|li)>|<br\s*/?>", "\n", text)
        text = re.sub(r"</t[dh]>", "  ", text)
        text = re.sub(r"<[^>]+>", "", text)
        lines = [line.strip() for line in text.splitlines() if line.strip() and "data:image" not in line]
        return html.unescape("\n".join(lines[:60])) + "\n"
    return data.get("text/plain", "") + "\n" if "text/plain" in data else ""


NOTEBOOKS = ("quickstart", "rag_or_finetune")


def run(name: str) -> bool:
    """Execute and print one notebook; False if a cell failed."""
    notebook = nbformat.read(HERE / f"{name}.ipynb", as_version=4)
    start = time.perf_counter()
    client = NotebookClient(notebook, timeout=1800, kernel_name="python3", resources={"metadata": {"path": str(HERE)}})
    failed = None
    try:
        client.execute()
    except Exception as exc:  # the executed cells are still printed below, up to the failure
        failed = exc
    for cell in notebook.cells:
        if cell.cell_type == "code":
            print(f">>> {cell.source}")
            for output in cell.get("outputs", []):
                print(output_text(output), end="")
    nbformat.write(notebook, HERE / f"{name}.out.ipynb")
    print(f"\n{name} ran in {time.perf_counter() - start:.0f} s; executed notebook: examples/{name}.out.ipynb\n")
    if failed:
        print(f"demo failed in {name}: {failed}", file=sys.stderr)
    return failed is None


def main() -> int:
    return 0 if all([run(name) for name in NOTEBOOKS]) else 1


if __name__ == "__main__":
    sys.exit(main())
