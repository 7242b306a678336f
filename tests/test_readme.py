"""The README's examples as a reader copies them: its plain Python runs as written, and every magic it
shows exists and accepts the flags it is given there."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from IPython.core.error import UsageError

from jupyter_finetune.magics import parse

ROOT = Path(__file__).resolve().parents[1]
FENCE = re.compile(r"^```(\w*)\n(.*?)^```$", re.M | re.S)
MAGIC = re.compile(r"^(%%?)(ft_\w+)(.*)$")


def code_blocks(language: str | None = None) -> list[str]:
    """The README's fenced code blocks, in order; only those of ``language`` when given."""
    return [body for lang, body in FENCE.findall((ROOT / "README.md").read_text())
            if language is None or lang == language]


def magic_lines() -> list[tuple[str, str, str]]:
    """(``line`` or ``cell``, magic name, its argument line exactly as IPython passes it) per ``%ft_`` line."""
    found = []
    for block in code_blocks():
        for line in block.splitlines():
            if match := MAGIC.match(line.strip()):
                prefix, name, arguments = match.groups()
                found.append(("cell" if prefix == "%%" else "line", name, arguments.strip()))
    return found


def parse_problems(shell) -> list[str]:
    """What each README magic line gets wrong: an unknown magic, or arguments its parser refuses."""
    magics = shell.magics_manager.registry["FinetuneMagics"]
    problems = []
    for kind, name, arguments in magic_lines():
        if name not in magics.magics[kind]:
            problems.append(f"{'%%' if kind == 'cell' else '%'}{name} is not a {kind} magic of FinetuneMagics "
                            f"(it has {', '.join(sorted(magics.magics[kind]))})")
            continue
        function = magics.magics[kind][name]
        try:
            parse(function, arguments)  # as the magic parses its line, a trailing comment included
        except UsageError as error:
            problems.append(f"%{name} {arguments}: {error}")
    return problems


def test_readme_magics_exist_and_accept_their_lines_as_written(shell):
    assert magic_lines()
    assert parse_problems(shell) == []


@pytest.mark.slow
@pytest.mark.smollm2
@pytest.mark.timeout(1800)  # 30 SmolLM2 steps and an evaluation: ~5 minutes on 2 idle cores
def test_readme_python_examples_run_as_written(tmp_path):
    """Each block without magics, in order as in one notebook, in a fresh folder where the README's
    ``examples/...`` paths resolve and ./ft_runs is the default."""
    blocks = [b for b in code_blocks("python") if not re.search(r"^\s*%", b, re.M)]
    assert blocks
    (tmp_path / "examples").symlink_to(ROOT / "examples")
    (tmp_path / "readme.py").write_text("\n".join(blocks))
    env = {k: v for k, v in os.environ.items() if k != "JUPYTER_FINETUNE_RUNS"}
    done = subprocess.run([sys.executable, "readme.py"], cwd=tmp_path, env={**env, "HF_HUB_OFFLINE": "1"},
                          capture_output=True, text=True)
    assert done.returncode == 0, f"a README example failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
