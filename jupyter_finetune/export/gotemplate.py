"""A small interpreter for the part of Go's text/template that Ollama TEMPLATEs use.

Export checks every Modelfile TEMPLATE it writes by rendering it here and comparing with the
model's own Jinja chat template, so a template that would prompt the model differently from
training is refused instead of shipped. It covers text, ``{{- -}}`` trimming, output of
fields, variables and literals, ``if``/``else if``/``else``, ``range`` (with ``$i, $m :=``),
``:=``/``=`` and the functions and, or, not, eq, ne, len, slice, index; anything else is an
error rather than a guess. Semantics follow the Go documentation (truth: false, 0, nil and
empty are false; ``and``/``or`` return an argument; variables are scoped to their block).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

_TOKEN = re.compile(r'''\s*(?:(?P<str>"(?:[^"\\]|\\.)*")|(?P<raw>`[^`]*`)|(?P<num>-?\d+)|(?P<decl>:=)|(?P<op>[(),=])'''
                    r'''|(?P<var>\$\w*(?:\.\w+)*)|(?P<field>(?:\.\w+)+|\.)|(?P<ident>[A-Za-z_]\w*))''')
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\", '"': '"', "'": "'", "a": "\a", "b": "\b", "f": "\f",
            "v": "\v"}


class GoTemplateError(ValueError):
    """The template uses syntax outside the supported subset, or is malformed."""


@dataclass
class _Node:
    kind: str
    """text, output, set, if, range."""
    text: str = ""
    expr: Any = None
    names: tuple[str, ...] = ()
    declare: bool = True
    body: list["_Node"] = field(default_factory=list)
    orelse: list["_Node"] = field(default_factory=list)


def render(template: str, data: dict[str, Any]) -> str:
    """Execute ``template`` on ``data`` (a dict; message objects are dicts with Role and Content keys)."""
    nodes, _ = _parse(_lex(template), 0, top=True)
    out: list[str] = []
    _execute(nodes, data, [{"$": data}], out)
    return "".join(out)


def _lex(template: str) -> list[tuple[str, str]]:
    """("text", literal) and ("action", inside of the braces) items, with trim markers applied."""
    items: list[tuple[str, str]] = []
    pos, trim_next = 0, False
    while pos < len(template):
        start = template.find("{{", pos)
        text = template[pos:] if start < 0 else template[pos:start]
        if trim_next:
            text = text.lstrip(" \t\r\n")
        if start < 0:
            items.append(("text", text))
            break
        end = _action_end(template, start + 2)
        inner = template[start + 2:end]
        if re.match(r"-\s", inner):
            text, inner = text.rstrip(" \t\r\n"), inner[2:]
        trim_next = bool(re.search(r"\s-\Z", inner))
        if trim_next:
            inner = inner[:-2]
        items += [("text", text), ("action", inner.strip())]
        pos = end + 2
    return [item for item in items if item != ("text", "")]


def _action_end(template: str, pos: int) -> int:
    """Index of the ``}}`` closing an action, skipping string literals inside it."""
    quote = None
    while pos < len(template):
        c = template[pos]
        if quote:
            if c == "\\" and quote == '"':
                pos += 1
            elif c == quote:
                quote = None
        elif c in "\"`":
            quote = c
        elif template.startswith("}}", pos):
            return pos
        pos += 1
    raise GoTemplateError("unclosed action: a '{{' has no matching '}}'")


def _parse(items: list[tuple[str, str]], pos: int, top: bool = False) -> tuple[list[_Node], int]:
    """Nodes up to the matching end/else (returned index points at it) or the end of input."""
    nodes: list[_Node] = []
    while pos < len(items):
        kind, value = items[pos]
        if kind == "text":
            nodes.append(_Node("text", text=value))
            pos += 1
            continue
        words = value.split(None, 1)
        keyword = words[0] if words else ""
        if keyword in ("end", "else"):
            if top:
                raise GoTemplateError(f"unexpected {{{{ {value} }}}}")
            return nodes, pos
        if keyword == "if":
            node, pos = _parse_if(items, pos, words[1] if len(words) > 1 else "")
        elif keyword == "range":
            node, pos = _parse_range(items, pos, words[1] if len(words) > 1 else "")
        elif keyword.startswith("/*"):
            pos += 1
            continue
        elif keyword in ("with", "define", "template", "block", "break", "continue"):
            raise GoTemplateError(f"{{{{ {keyword} }}}} is outside the supported subset")
        else:
            node, pos = _statement(value), pos + 1
        nodes.append(node)
    if not top:
        raise GoTemplateError("missing {{ end }}")
    return nodes, pos


def _parse_if(items: list[tuple[str, str]], pos: int, condition: str) -> tuple[_Node, int]:
    node = _Node("if", expr=_expression(condition))
    node.body, pos = _parse(items, pos + 1)
    closing = items[pos][1]
    if closing.startswith("else if ") or closing.startswith("else if\t"):
        nested, pos = _parse_if(items, pos, closing[len("else if"):].strip())
        node.orelse = [nested]
        return node, pos  # the nested if consumed the shared {{ end }}
    if closing == "else":
        node.orelse, pos = _parse(items, pos + 1)
        closing = items[pos][1]
    if closing != "end":
        raise GoTemplateError(f"{{{{ {closing} }}}} cannot close an {{{{ if }}}} here")
    return node, pos + 1


def _parse_range(items: list[tuple[str, str]], pos: int, header: str) -> tuple[_Node, int]:
    names: tuple[str, ...] = ()
    if ":=" in header:
        left, header = header.split(":=", 1)
        names = tuple(n.strip() for n in left.split(","))
        if not all(re.fullmatch(r"\$\w+", n) for n in names) or len(names) > 2:
            raise GoTemplateError(f"range variables {left.strip()!r}: use $x or $i, $x")
    node = _Node("range", expr=_expression(header), names=names)
    node.body, pos = _parse(items, pos + 1)
    if items[pos][1] == "else":
        node.orelse, pos = _parse(items, pos + 1)
    if items[pos][1] != "end":
        raise GoTemplateError("a {{ range }} is not closed by {{ end }}")
    return node, pos + 1


def _statement(action: str) -> _Node:
    match = re.fullmatch(r"(\$\w+)\s*(:=|=)\s*(.+)", action, re.S)
    if match:
        return _Node("set", names=(match.group(1),), declare=match.group(2) == ":=", expr=_expression(match.group(3)))
    return _Node("output", expr=_expression(action))


def _expression(source: str) -> Any:
    tokens = _tokens(source)
    expr, pos = _command(tokens, 0)
    if pos != len(tokens):
        raise GoTemplateError(f"cannot read {source!r} (pipelines with '|' are outside the supported subset)")
    return expr


def _tokens(source: str) -> list[tuple[str, str]]:
    tokens, pos = [], 0
    while pos < len(source.rstrip()):
        match = _TOKEN.match(source, pos)
        if not match:
            raise GoTemplateError(f"cannot read {source[pos:]!r}")
        tokens.append((match.lastgroup, match.group(match.lastgroup)))
        pos = match.end()
    return tokens


def _command(tokens: list[tuple[str, str]], pos: int) -> tuple[Any, int]:
    """A function call with its arguments, or one operand."""
    if pos < len(tokens) and tokens[pos][0] == "ident" and tokens[pos][1] not in ("true", "false", "nil"):
        name, args, pos = tokens[pos][1], [], pos + 1
        while pos < len(tokens) and tokens[pos][1] != ")":
            arg, pos = _operand(tokens, pos)
            args.append(arg)
        return ("call", name, args), pos
    return _operand(tokens, pos)


def _operand(tokens: list[tuple[str, str]], pos: int) -> tuple[Any, int]:
    if pos >= len(tokens):
        raise GoTemplateError("an expression ends too early")
    kind, text = tokens[pos]
    if text == "(":
        inner, pos = _command(tokens, pos + 1)
        if pos >= len(tokens) or tokens[pos][1] != ")":
            raise GoTemplateError("unbalanced parentheses")
        return inner, pos + 1
    if kind == "str":
        return ("lit", _unescape(text[1:-1])), pos + 1
    if kind == "raw":
        return ("lit", text[1:-1]), pos + 1
    if kind == "num":
        return ("lit", int(text)), pos + 1
    if kind == "ident" and text in ("true", "false", "nil"):
        return ("lit", {"true": True, "false": False, "nil": None}[text]), pos + 1
    if kind == "var":
        name, *fields = text.split(".")
        return ("var", name, fields), pos + 1
    if kind == "field":
        return ("var", ".", [f for f in text.split(".") if f]), pos + 1
    raise GoTemplateError(f"unexpected {text!r} (a function can only come first in a command)")


def _unescape(body: str) -> str:
    out, i = [], 0
    while i < len(body):
        if body[i] != "\\":
            out.append(body[i])
            i += 1
        elif body[i + 1] == "u":
            out.append(chr(int(body[i + 2:i + 6], 16)))
            i += 6
        elif body[i + 1] == "U":
            out.append(chr(int(body[i + 2:i + 10], 16)))
            i += 10
        elif body[i + 1] == "x":
            out.append(chr(int(body[i + 2:i + 4], 16)))
            i += 4
        elif body[i + 1] in _ESCAPES:
            out.append(_ESCAPES[body[i + 1]])
            i += 2
        else:
            raise GoTemplateError(f"unknown escape \\{body[i + 1]} in a string literal")
    return "".join(out)


def _execute(nodes: list[_Node], dot: Any, scopes: list[dict[str, Any]], out: list[str]) -> None:
    for node in nodes:
        if node.kind == "text":
            out.append(node.text)
        elif node.kind == "output":
            out.append(_format(_evaluate(node.expr, dot, scopes)))
        elif node.kind == "set":
            _assign(node, _evaluate(node.expr, dot, scopes), scopes)
        elif node.kind == "if":
            branch = node.body if _truth(_evaluate(node.expr, dot, scopes)) else node.orelse
            _execute(branch, dot, scopes + [{}], out)
        else:
            _range(node, dot, scopes, out)


def _range(node: _Node, dot: Any, scopes: list[dict[str, Any]], out: list[str]) -> None:
    items = _evaluate(node.expr, dot, scopes)
    if items is None or len(items) == 0:
        _execute(node.orelse, dot, scopes + [{}], out)
        return
    pairs = items.items() if isinstance(items, dict) else enumerate(items)
    for key, item in pairs:
        names = dict(zip(node.names, (key, item))) if len(node.names) == 2 else dict(zip(node.names, (item,)))
        _execute(node.body, item, scopes + [names], out)


def _assign(node: _Node, value: Any, scopes: list[dict[str, Any]]) -> None:
    name = node.names[0]
    if node.declare:
        scopes[-1][name] = value
        return
    for scope in reversed(scopes):
        if name in scope:
            scope[name] = value
            return
    raise GoTemplateError(f"undefined variable {name}")


def _evaluate(expr: Any, dot: Any, scopes: list[dict[str, Any]]) -> Any:
    if expr[0] == "lit":
        return expr[1]
    if expr[0] == "var":
        _, name, fields = expr
        value = dot if name == "." else _lookup(name, scopes)
        for name in fields:
            value = _field(value, name)
        return value
    _, name, args = expr
    if name in ("and", "or"):
        value = None
        for arg in args:  # short-circuit, returning the deciding argument (Go 1.18+)
            value = _evaluate(arg, dot, scopes)
            if _truth(value) == (name == "or"):
                return value
        return value
    values = [_evaluate(arg, dot, scopes) for arg in args]
    return _call(name, values)


def _call(name: str, values: list[Any]) -> Any:
    if name == "not" and len(values) == 1:
        return not _truth(values[0])
    if name == "eq" and len(values) >= 2:
        return any(values[0] == v for v in values[1:])
    if name == "ne" and len(values) == 2:
        return values[0] != values[1]
    if name == "len" and len(values) == 1:
        return len(values[0])
    if name == "slice" and 1 <= len(values) <= 3:  # slice x i j is x[i:j]; slice x i is x[i:]
        start, stop = (values[1:] + [None, None])[:2]
        return values[0][start:stop]
    if name == "index" and len(values) >= 2:
        value = values[0]
        for key in values[1:]:
            value = value[key]
        return value
    raise GoTemplateError(f"function {name!r} with {len(values)} argument(s) is outside the supported subset")


def _lookup(name: str, scopes: list[dict[str, Any]]) -> Any:
    for scope in reversed(scopes):
        if name in scope:
            return scope[name]
    raise GoTemplateError(f"undefined variable {name}")


def _field(value: Any, name: str) -> Any:
    if isinstance(value, dict):
        return value.get(name)  # Ollama parses with missingkey=zero
    raise GoTemplateError(f"can't evaluate field {name} in {type(value).__name__}")


def _truth(value: Any) -> bool:
    return not (value is None or value is False or value == 0 or (hasattr(value, "__len__") and len(value) == 0))


def _format(value: Any) -> str:
    if value is None:
        return "<no value>"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
