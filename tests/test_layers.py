"""Imports point down the layers (DESIGN.md): read from the source with ast, lazy imports included."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import jupyter_finetune

PACKAGE = Path(jupyter_finetune.__file__).parent
LOWER = ("data", "models", "engine", "evaluation", "export", "runs")
FRONT = ("ui", "magics", "api", "server")
MAGICS_MAY_IMPORT = {"IPython", "traitlets", "__future__", *sys.stdlib_module_names}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def is_module(name: str) -> bool:
    relative = Path(*name.split(".")[1:])
    return (PACKAGE / relative).with_suffix(".py").is_file() or (PACKAGE / relative / "__init__.py").is_file()


def imports(path: Path) -> set[str]:
    """Every module ``path`` imports, anywhere in it (inside functions too); package modules by full name."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            # ``from pkg import sub`` imports the module pkg.sub when there is one
            subs = [f"{base}.{alias.name}" for alias in node.names if is_module(f"{base}.{alias.name}")]
            found.update(subs or [base])
    return found


def component(module: str) -> str:
    """``jupyter_finetune.data.dataset`` -> ``data``; outside the package: its top-level name."""
    parts = module.split(".")
    return parts[1] if parts[0] == "jupyter_finetune" and len(parts) > 1 else parts[0]


SOURCES = {module_name(p): imports(p) for p in sorted(PACKAGE.rglob("*.py"))}


def test_lower_layers_import_no_front_end():
    upward = sorted(f"{source} imports {target}" for source, targets in SOURCES.items() if component(source) in LOWER
                    for target in targets if target.startswith("jupyter_finetune.") and component(target) in FRONT)
    assert upward == []


def test_magics_import_only_api_and_ui_from_the_package():
    allowed = {"jupyter_finetune.api", "jupyter_finetune.ui"}
    wrong = sorted(t for t in SOURCES["jupyter_finetune.magics"]
                   if not (t in allowed or t.startswith("jupyter_finetune.ui.") or
                           (not t.startswith("jupyter_finetune") and t.split(".")[0] in MAGICS_MAY_IMPORT)))
    assert wrong == []


def test_no_import_cycle_between_subpackages():
    edges: dict[str, set[str]] = {}
    for source, targets in SOURCES.items():
        if source == "jupyter_finetune":  # the package's own lazy facade (load_ext, train) sits above everything
            continue
        edges.setdefault(component(source), set()).update(
            component(t) for t in targets if t.startswith("jupyter_finetune.") and component(t) != component(source))
    cycles = []

    def visit(node: str, path: list[str]) -> None:
        for nxt in sorted(edges.get(node, ())):
            if nxt in path:
                cycles.append(" -> ".join(path[path.index(nxt):] + [nxt]))
            elif len(path) < len(edges):
                visit(nxt, path + [nxt])

    for start in sorted(edges):
        visit(start, [start])
    assert cycles == []


def test_ui_and_server_never_import_api_or_magics():
    """api composes operations and attaches the ui's live displays (the training dashboard), so ui
    renders objects of the layers below and never calls back up; the server reads only the store."""
    upward = sorted(f"{source} imports {target}" for source, targets in SOURCES.items()
                    if component(source) in ("ui", "server") for target in targets
                    if target.startswith("jupyter_finetune.") and component(target) in ("api", "magics"))
    assert upward == []
