"""Go's ``text/template`` language as Docker users write it in ``--format`` and ``-f``.

No maintained Python package implements Go templates (PyPI has one CGo wrapper at 0.0.2 that
needs a Go toolchain at install time), so this module is a small engine of its own: a lexer,
a parser to a tree of nodes, and an evaluator over plain Python data (dicts, lists, strings,
numbers, bools, None), with Go's printing rules and Docker's extra functions.

Supported: text and ``{{- -}}`` trimming; comments ``{{/* */}}``; pipelines ``a | b``;
fields ``.A.B``, ``.``, ``$``, variables ``$x := ...`` / ``$x = ...``, ``(pipeline).Field``;
string (``"..."`` with escapes, raw backquoted), number, ``true``/``false``/``nil`` literals;
``if``/``else if``/``else``/``end``, ``range`` (with ``$i, $v :=`` and ``else``), ``with``,
``break``/``continue``; the functions ``and or not eq ne lt le gt ge len index slice print
printf println`` of Go and ``json join split title lower upper pad truncate`` of Docker.

Missing map keys print ``<no value>`` (``docker inspect`` decodes JSON into maps); in
*strict* mode (the listing contexts, Go structs in Docker) they are an error, as Docker's
"can't evaluate field X". Every error is :class:`TemplateError`, an ``InvalidArgument``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from netfabric.errors import InvalidArgument

__all__ = ["GoTime", "Struct", "Template", "TemplateError", "go_string", "json_data", "render"]


class TemplateError(InvalidArgument):
    """A template that does not parse or cannot be executed on the data given."""


_MISSING = object()
"""A map key that is absent (Go's invalid reflect.Value): prints ``<no value>``."""


class Struct(dict[str, Any]):
    """A Go struct rather than a map: ``%v`` prints ``{v1 v2}`` in field order and ``json``
    keeps that order; fields in ``omitempty`` are left out of ``json`` when empty."""

    omitempty: frozenset[str] = frozenset()

    def __init__(self, fields: Mapping[str, Any] | None = None, *,
                 omitempty: frozenset[str] | set[str] = frozenset()) -> None:
        super().__init__(fields or {})
        self.omitempty = frozenset(omitempty)


class GoTime(str):
    """A ``time.Time``: JSON (and ``str``) is RFC 3339, ``%v`` is Go's ``Time.String()``."""

    go: str

    def __new__(cls, rfc3339: str, go: str) -> GoTime:
        obj = super().__new__(cls, rfc3339)
        obj.go = go
        return obj


# -- values as Go prints them -------------------------------------------------------------------

def _go_float(value: float) -> str:
    """``strconv.FormatFloat(v, 'g', -1, 64)``: shortest digits, exponent from 1e+06 on."""
    if value != value:
        return "NaN"
    if value in (float("inf"), float("-inf")):
        return "+Inf" if value > 0 else "-Inf"
    if value == 0:
        return "0"
    sign, digits, exp = Decimal(repr(value)).normalize().as_tuple()
    assert isinstance(exp, int)
    text = "".join(map(str, digits))
    x = exp + len(text) - 1  # the decimal exponent of the first digit
    minus = "-" if sign else ""
    if x < -4 or x >= 6:
        mant = text[0] + ("." + text[1:] if len(text) > 1 else "")
        return f"{minus}{mant}e{'-' if x < 0 else '+'}{abs(x):02d}"
    if exp >= 0:
        return minus + text + "0" * exp
    point = len(text) + exp
    if point > 0:
        return f"{minus}{text[:point]}.{text[point:]}"
    return f"{minus}0.{'0' * -point}{text}"


def go_string(value: Any) -> str:
    """``fmt.Sprint(value)`` for JSON-shaped data: ``map[a:1 b:2]``, ``[x y]``, ``<nil>``."""
    if value is _MISSING:
        return "<no value>"
    if value is None:
        return "<nil>"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return _go_float(value)
    if isinstance(value, GoTime):
        return value.go
    if isinstance(value, Struct):
        return "{" + " ".join(go_string(v) for v in value.values()) + "}"
    if isinstance(value, Mapping):
        return "map[" + " ".join(f"{go_string(k)}:{go_string(v)}"
                                 for k, v in sorted(value.items(), key=_sort_key)) + "]"
    if isinstance(value, list | tuple):
        return "[" + " ".join(go_string(v) for v in value) + "]"
    return str(value)


def _sort_key(item: tuple[Any, Any]) -> Any:
    return item[0]


def _truth(value: Any) -> bool:
    if value is _MISSING or value is None:
        return False
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return value != 0
    if isinstance(value, str | list | tuple | Mapping):
        return len(value) > 0
    return True


def _empty(value: Any) -> bool:
    return value is None or value is False or value == 0 or (
        isinstance(value, str | list | tuple | Mapping) and not value)


def json_data(value: Any) -> Any:
    """``value`` as Go's encoder orders it: maps sorted by key, structs in field order
    (their empty ``omitempty`` fields left out); a context's methods are no data."""
    if value is _MISSING:
        return None
    if isinstance(value, Struct):
        return {k: json_data(v) for k, v in value.items()
                if not callable(v) and not (k in value.omitempty and _empty(v))}
    if isinstance(value, Mapping):
        return {k: json_data(v) for k, v in sorted(value.items(), key=_sort_key)
                if not callable(v)}
    if isinstance(value, list | tuple):
        return [json_data(v) for v in value]
    if isinstance(value, GoTime):
        return str(value)
    return value


def _json(value: Any) -> str:
    """Docker's ``json`` function: compact, Go's key order, no HTML escaping."""
    return json.dumps(json_data(value), separators=(",", ":"), ensure_ascii=False,
                      default=str)


# -- lexing -------------------------------------------------------------------------------------

_TOKEN = re.compile(r"""
    (?P<space>\s+)
  | (?P<string>"(?:[^"\\\n]|\\.)*")
  | (?P<raw>`[^`]*`)
  | (?P<char>'(?:[^'\\\n]|\\.)+')
  | (?P<declare>:=)
  | (?P<assign>=)
  | (?P<number>[+-]?(?:0[xX][0-9a-fA-F_]+|(?:\d[\d_]*(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?))
  | (?P<field>(?:\.[A-Za-z_][A-Za-z0-9_]*)+|\.)
  | (?P<variable>\$[A-Za-z0-9_]*)
  | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<pipe>\|)
  | (?P<lparen>\()
  | (?P<rparen>\))
  | (?P<comma>,)
""", re.VERBOSE)


@dataclass(frozen=True, slots=True)
class _Tok:
    kind: str
    text: str
    glued: bool = False  # no space before it: `$v.A`, `(x).A` continue an operand


def _unquote(text: str) -> str:
    if text.startswith("`"):
        return text[1:-1]
    try:
        value = json.loads(text if text.startswith('"') else '"' + text[1:-1] + '"')
    except json.JSONDecodeError:
        # Go escapes JSON lacks: \a \v \x41 \101 \'
        body = text[1:-1]
        try:
            value = body.encode("latin-1", "backslashreplace").decode("unicode_escape")
        except UnicodeDecodeError as exc:
            raise TemplateError(f"template: bad string literal {text}") from exc
    return str(value)


def _lex_action(text: str) -> list[_Tok]:
    toks: list[_Tok] = []
    pos = 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            raise TemplateError(f"template: unexpected {text[pos]!r} in action {{{{{text}}}}}")
        kind = m.lastgroup or ""
        glued = pos > 0 and not text[pos - 1].isspace()
        pos = m.end()
        if kind == "space":
            continue
        toks.append(_Tok(kind, m.group(), glued))
    return toks


# -- the tree -----------------------------------------------------------------------------------

@dataclass(slots=True)
class _Text:
    text: str


@dataclass(slots=True)
class _Cmd:
    args: list[Any]  # operands: _Field, _Var, _Lit, _Ident, _Pipe, _Chain


@dataclass(slots=True)
class _Pipe:
    cmds: list[_Cmd]
    decl: list[str] = field(default_factory=list)
    assign: bool = False  # `=` rather than `:=`


@dataclass(frozen=True, slots=True)
class _Field:
    path: tuple[str, ...]  # () is `.`


@dataclass(frozen=True, slots=True)
class _Var:
    name: str
    path: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class _Lit:
    value: Any


@dataclass(frozen=True, slots=True)
class _Ident:
    name: str


@dataclass(slots=True)
class _Chain:
    node: Any
    path: tuple[str, ...]


@dataclass(slots=True)
class _Action:
    pipe: _Pipe


@dataclass(slots=True)
class _Branch:
    kind: str  # if, range, with
    pipe: _Pipe
    body: list[Any]
    orelse: list[Any]


@dataclass(frozen=True, slots=True)
class _Jump:
    kind: str  # break, continue


class _BreakLoop(Exception):
    pass


class _ContinueLoop(Exception):
    pass


_ACTION = re.compile(r"\{\{(-\s)?(.*?)(\s-)?\}\}", re.DOTALL)


def _split(src: str) -> Iterator[tuple[str, str]]:
    """("text", ...) and ("action", ...) pieces, with ``{{-``/``-}}`` trimming applied."""
    pos = 0
    pending_trim = False
    for m in _ACTION.finditer(src):
        text = src[pos:m.start()]
        if pending_trim:
            text = text.lstrip()
        if m.group(1):
            text = text.rstrip()
        if text:
            yield "text", text
        yield "action", m.group(2)
        pending_trim = bool(m.group(3))
        pos = m.end()
    text = src[pos:]
    if pending_trim:
        text = text.lstrip()
    if "{{" in text:
        raise TemplateError(f"template: unclosed action in {src!r}")
    if text:
        yield "text", text


class _Parser:
    def __init__(self, src: str) -> None:
        self.src = src
        self.pieces = list(_split(src))
        self.i = 0

    def parse(self) -> list[Any]:
        nodes, end = self._list()
        if end is not None:
            raise TemplateError(f"template: unexpected {{{{{end[0]}}}}} in {self.src!r}")
        return nodes

    def _list(self) -> tuple[list[Any], tuple[str, list[_Tok]] | None]:
        """Nodes up to an ``end``/``else`` (returned as the terminator) or the source end."""
        nodes: list[Any] = []
        while self.i < len(self.pieces):
            kind, text = self.pieces[self.i]
            self.i += 1
            if kind == "text":
                nodes.append(_Text(text))
                continue
            stripped = text.strip()
            if stripped.startswith("/*"):
                if not stripped.endswith("*/"):
                    raise TemplateError(f"template: unclosed comment in {self.src!r}")
                continue
            toks = _lex_action(text)
            if not toks:
                raise TemplateError(f"template: missing value for command in {self.src!r}")
            head = toks[0]
            if head.kind == "ident" and head.text in ("end", "else"):
                return nodes, (head.text, toks[1:])
            if head.kind == "ident" and head.text in ("if", "range", "with"):
                nodes.append(self._branch(head.text, toks[1:]))
            elif head.kind == "ident" and head.text in ("break", "continue"):
                nodes.append(_Jump(head.text))
            elif head.kind == "ident" and head.text in ("define", "template", "block"):
                raise TemplateError(f"template: {{{{{head.text}}}}} is not supported")
            else:
                nodes.append(_Action(_PipeParser(toks, self.src).pipeline(allow_decl=True)))
        return nodes, None

    def _branch(self, kind: str, toks: list[_Tok]) -> _Branch:
        pipe = _PipeParser(toks, self.src).pipeline(allow_decl=True)
        body, end = self._list()
        if end is None:
            raise TemplateError(f"template: unexpected EOF: {{{{{kind}}}}} without "
                                f"{{{{end}}}} in {self.src!r}")
        orelse: list[Any] = []
        if end[0] == "else":
            rest = end[1]
            if rest and rest[0].kind == "ident" and rest[0].text in ("if", "with"):
                orelse = [self._branch(rest[0].text, rest[1:])]  # consumes the shared end
            else:
                if rest:
                    raise TemplateError(f"template: unexpected tokens after else in "
                                        f"{self.src!r}")
                orelse, end2 = self._list()
                if end2 is None or end2[0] != "end":
                    raise TemplateError(f"template: {{{{{kind}}}}}...{{{{else}}}} without "
                                        f"{{{{end}}}} in {self.src!r}")
        return _Branch(kind, pipe, body, orelse)


class _PipeParser:
    def __init__(self, toks: list[_Tok], src: str) -> None:
        self.toks = toks
        self.src = src
        self.pos = 0

    def _peek(self) -> _Tok | None:
        return self.toks[self.pos] if self.pos < len(self.toks) else None

    def _fail(self, what: str) -> TemplateError:
        return TemplateError(f"template: {what} in {self.src!r}")

    def pipeline(self, *, allow_decl: bool, inner: bool = False) -> _Pipe:
        decl: list[str] = []
        assign = False
        if allow_decl:
            # $x := ...   or   $i, $v := ...   or   $x = ...
            save = self.pos
            names: list[str] = []
            while (tok := self._peek()) is not None and tok.kind == "variable":
                names.append(tok.text)
                self.pos += 1
                nxt = self._peek()
                if nxt is not None and nxt.kind == "comma":
                    self.pos += 1
                    continue
                break
            nxt = self._peek()
            if names and nxt is not None and nxt.kind in ("declare", "assign"):
                decl = names
                assign = nxt.kind == "assign"
                self.pos += 1
            else:
                self.pos = save
        cmds: list[_Cmd] = []
        while True:
            cmd = self._command()
            cmds.append(cmd)
            tok = self._peek()
            if tok is None or (inner and tok.kind == "rparen"):
                break
            if tok.kind != "pipe":
                raise self._fail(f"unexpected {tok.text!r}")
            self.pos += 1
        if not inner and self.pos != len(self.toks):
            raise self._fail(f"unexpected {self.toks[self.pos].text!r}")
        return _Pipe(cmds, decl, assign)

    def _command(self) -> _Cmd:
        args: list[Any] = []
        while (tok := self._peek()) is not None and tok.kind not in ("pipe", "rparen"):
            args.append(self._operand())
        if not args:
            raise self._fail("missing value for command")
        return _Cmd(args)

    def _operand(self) -> Any:
        tok = self.toks[self.pos]
        self.pos += 1
        node: Any
        if tok.kind == "field":
            node = _Field(tuple(p for p in tok.text.split(".") if p))
        elif tok.kind == "variable":
            node = _Var(tok.text)
        elif tok.kind in ("string", "raw"):
            node = _Lit(_unquote(tok.text))
        elif tok.kind == "char":
            node = _Lit(ord(_unquote(tok.text)))
        elif tok.kind == "number":
            text = tok.text.replace("_", "")
            try:
                node = _Lit(int(text, 0))
            except ValueError:
                node = _Lit(float(text))
        elif tok.kind == "ident":
            node = {"true": _Lit(True), "false": _Lit(False),
                    "nil": _Lit(None)}.get(tok.text) or _Ident(tok.text)
        elif tok.kind == "lparen":
            node = self.pipeline(allow_decl=False, inner=True)
            close = self._peek()
            if close is None or close.kind != "rparen":
                raise self._fail("unclosed left paren")
            self.pos += 1
        else:
            raise self._fail(f"unexpected {tok.text!r}")
        # a field chain straight after an operand: (x).A.B, $v.A
        nxt = self._peek()
        if nxt is not None and nxt.kind == "field" and nxt.glued and not isinstance(
                node, _Field | _Ident | _Lit):
            self.pos += 1
            path = tuple(p for p in nxt.text.split(".") if p)
            node = _Var(node.name, path) if isinstance(node, _Var) else _Chain(node, path)
        return node


# -- functions ----------------------------------------------------------------------------------

def _index(item: Any, *keys: Any) -> Any:
    for key in keys:
        if isinstance(item, Mapping):
            item = item.get(key, _MISSING)
        elif isinstance(item, list | tuple | str):
            if not isinstance(key, int) or isinstance(key, bool):
                raise TemplateError(f"template: index: cannot index slice with {key!r}")
            if not 0 <= key < len(item):
                raise TemplateError(f"template: index: index out of range: {key}")
            item = item[key]
        elif item is None or item is _MISSING:
            raise TemplateError("template: index of untyped nil")
        else:
            raise TemplateError(f"template: can't index item of type {type(item).__name__}")
    return item


def _len(item: Any) -> int:
    if isinstance(item, str | list | tuple | Mapping):
        return len(item)
    raise TemplateError(f"template: len of {go_string(item)}")


def _slice(item: Any, *idx: int) -> Any:
    if not isinstance(item, str | list | tuple):
        raise TemplateError("template: slice of a non-slice")
    if len(idx) > 2:
        raise TemplateError("template: slice: too many indexes")
    start = idx[0] if idx else 0
    stop = idx[1] if len(idx) > 1 else len(item)
    if not 0 <= start <= stop <= len(item):
        raise TemplateError(f"template: slice: index out of range [{start}:{stop}]")
    return item[start:stop]


_VERB = re.compile(r"%([-+# 0]*)(\d+|\*)?(?:\.(\d+))?([a-zA-Z%])")


def _sprintf(fmt: str, *args: Any) -> str:
    """Go's ``fmt.Sprintf`` for the verbs templates use: %s %v %d %q %x %X %f %t %%."""
    items = list(args)
    out: list[str] = []
    pos = 0
    for m in _VERB.finditer(fmt):
        out.append(fmt[pos:m.start()])
        pos = m.end()
        flags, width, prec, verb = m.groups()
        if verb == "%":
            out.append("%")
            continue
        if not items:
            out.append(f"%!{verb}(MISSING)")
            continue
        arg = items.pop(0)
        if verb in "sv":
            text = go_string(arg)
            if prec is not None and verb == "s":
                text = text[:int(prec)]
        elif verb == "q":
            text = json.dumps(go_string(arg) if not isinstance(arg, str) else arg,
                              ensure_ascii=False)
        elif verb == "t":
            text = go_string(arg) if isinstance(arg, bool) else f"%!t({go_string(arg)})"
        elif verb in "dxXob" and isinstance(arg, int) and not isinstance(arg, bool):
            text = format(arg, {"d": "d", "x": "x", "X": "X", "o": "o", "b": "b"}[verb])
        elif verb in "xX" and isinstance(arg, str):
            text = arg.encode().hex()
            text = text.upper() if verb == "X" else text
        elif verb in "feg" and isinstance(arg, int | float) and not isinstance(arg, bool):
            text = format(float(arg), f".{prec if prec is not None else 6}{verb}")
        else:
            text = f"%!{verb}({go_string(arg)})"
        if width:
            w = int(width)
            if "-" in flags:
                text = text.ljust(w)
            elif "0" in flags and verb in "dxXfeg":
                text = text.rjust(w, "0")
            else:
                text = text.rjust(w)
        out.append(text)
    out.append(fmt[pos:])
    if items:
        out.append("%!(EXTRA " + ", ".join(f"{type(a).__name__}={go_string(a)}"
                                           for a in items) + ")")
    return "".join(out)


def _sprint(*args: Any) -> str:
    # Go adds a space between operands when neither is a string
    out = ""
    for i, arg in enumerate(args):
        if i and not isinstance(arg, str) and not isinstance(args[i - 1], str):
            out += " "
        out += go_string(arg)
    return out


def _join(items: Any, sep: str) -> str:
    if not isinstance(items, list | tuple):
        raise TemplateError(f"template: join: expected a list, got {go_string(items)}")
    return sep.join(go_string(i) for i in items)


def _pad(text: Any, left: int, right: int) -> str:
    return " " * left + go_string(text) + " " * right


def _truncate(text: Any, n: int) -> str:
    s = go_string(text)
    return s[:n] if len(s) > n else s


def _compare(op: str) -> Callable[..., bool]:
    def cmp(a: Any, *bs: Any) -> bool:
        if op == "eq":
            return any(a == b for b in bs) if bs else _fail_arity("eq")
        if len(bs) != 1:
            raise TemplateError(f"template: {op}: wrong number of args")
        b = bs[0]
        if op == "ne":
            return bool(a != b)
        if type(a) is not type(b) and not (isinstance(a, int | float)
                                           and isinstance(b, int | float)):
            raise TemplateError(f"template: {op}: incompatible types for comparison")
        try:
            return bool({"lt": a < b, "le": a <= b, "gt": a > b, "ge": a >= b}[op])
        except TypeError as exc:
            raise TemplateError(f"template: {op}: invalid type for comparison") from exc
    return cmp


def _fail_arity(name: str) -> bool:
    raise TemplateError(f"template: {name}: missing argument for comparison")


def _title(text: Any) -> str:
    return re.sub(r"(^|\s)(\S)", lambda m: m.group(1) + m.group(2).upper(), go_string(text))


FUNCS: dict[str, Callable[..., Any]] = {
    "json": _json,
    "join": _join,
    "split": lambda s, sep: go_string(s).split(sep),
    "title": _title,
    "lower": lambda s: go_string(s).lower(),
    "upper": lambda s: go_string(s).upper(),
    "pad": _pad,
    "truncate": _truncate,
    "index": _index,
    "len": _len,
    "slice": _slice,
    "print": _sprint,
    "printf": _sprintf,
    "println": lambda *a: " ".join(go_string(x) for x in a) + "\n",
    "not": lambda a: not _truth(a),
    "eq": _compare("eq"), "ne": _compare("ne"), "lt": _compare("lt"),
    "le": _compare("le"), "gt": _compare("gt"), "ge": _compare("ge"),
}
"""Go's builtins (``and``/``or`` are special forms) and Docker's template functions."""


# -- evaluation ---------------------------------------------------------------------------------

class _Exec:
    def __init__(self, src: str, *, strict: bool, funcs: Mapping[str, Callable[..., Any]]
                 ) -> None:
        self.src = src
        self.strict = strict
        self.funcs = funcs
        self.vars: list[tuple[str, Any]] = []
        self.out: list[str] = []

    def run(self, nodes: list[Any], dot: Any) -> None:
        for node in nodes:
            if isinstance(node, _Text):
                self.out.append(node.text)
            elif isinstance(node, _Action):
                value = self.pipe(node.pipe, dot)
                if not node.pipe.decl:
                    self.out.append(go_string(value))
            elif isinstance(node, _Branch):
                self.branch(node, dot)
            elif isinstance(node, _Jump):
                raise _BreakLoop() if node.kind == "break" else _ContinueLoop()

    def branch(self, node: _Branch, dot: Any) -> None:
        mark = len(self.vars)
        value = self.pipe(node.pipe, dot, declare=node.kind != "range")
        try:
            if node.kind == "if":
                self.run(node.body if _truth(value) else node.orelse, dot)
            elif node.kind == "with":
                if _truth(value):
                    self.run(node.body, value)
                else:
                    self.run(node.orelse, dot)
            else:
                self.range(node, value, dot)
        finally:
            del self.vars[mark:]

    def range(self, node: _Branch, value: Any, dot: Any) -> None:
        if value is None or value is _MISSING:
            items: list[tuple[Any, Any]] = []
        elif isinstance(value, Mapping):
            items = sorted(value.items(), key=_sort_key)
        elif isinstance(value, list | tuple):
            items = list(enumerate(value))
        elif isinstance(value, int) and not isinstance(value, bool):
            items = [(i, i) for i in range(value)]
        else:
            raise TemplateError(f"template: range can't iterate over {go_string(value)}")
        if not items:
            self.run(node.orelse, dot)
            return
        decl = node.pipe.decl
        for key, elem in items:
            mark = len(self.vars)
            if len(decl) == 1:
                self.vars.append((decl[0], elem))
            elif len(decl) == 2:
                self.vars.append((decl[0], key))
                self.vars.append((decl[1], elem))
            try:
                self.run(node.body, elem)
            except _BreakLoop:
                break
            except _ContinueLoop:
                continue
            finally:
                del self.vars[mark:]

    def pipe(self, pipe: _Pipe, dot: Any, *, declare: bool = True) -> Any:
        value: Any = _MISSING
        first = True
        for cmd in pipe.cmds:
            value = self.command(cmd, dot, None if first else (value,))
            first = False
        if pipe.decl and declare:
            if pipe.assign:
                for i in range(len(self.vars) - 1, -1, -1):
                    if self.vars[i][0] == pipe.decl[0]:
                        self.vars[i] = (pipe.decl[0], value)
                        break
                else:
                    raise TemplateError(f"template: undefined variable: {pipe.decl[0]}")
            else:
                self.vars.append((pipe.decl[-1], value))
        return value

    def command(self, cmd: _Cmd, dot: Any, piped: tuple[Any] | None) -> Any:
        head = cmd.args[0]
        if isinstance(head, _Ident):
            name = head.name
            if name in ("and", "or"):
                return self.logic(name, cmd.args[1:], dot, piped)
            fn = self.funcs.get(name)
            if fn is None:
                raise TemplateError(f'template: function "{name}" not defined')
            args = [self.operand(a, dot) for a in cmd.args[1:]]
            if piped is not None:
                args.append(piped[0])
            return self.call(name, fn, args)
        value = self.operand(head, dot, call=False)
        if callable(value):  # a method of the context, e.g. `{{.Label "com.example"}}`
            args = [self.operand(a, dot) for a in cmd.args[1:]]
            if piped is not None:
                args.append(piped[0])
            return self.call("method", value, args)
        if len(cmd.args) > 1 or piped is not None:
            raise TemplateError(f"template: can't give argument to non-function "
                                f"in {self.src!r}")
        return value

    @staticmethod
    def call(name: str, fn: Callable[..., Any], args: list[Any]) -> Any:
        try:
            return fn(*args)
        except TemplateError:
            raise
        except (TypeError, ValueError, AttributeError) as exc:
            raise TemplateError(f"template: error calling {name}: {exc}") from exc

    def logic(self, name: str, args: list[Any], dot: Any, piped: tuple[Any] | None) -> Any:
        nodes: list[Any] = list(args)
        if piped is not None:
            nodes.append(_Lit(piped[0]))
        if not nodes:
            raise TemplateError(f"template: {name}: wrong number of args")
        value: Any = None
        for node in nodes:  # evaluated lazily: `and` stops at the first false, `or` true
            value = self.operand(node, dot)
            if (name == "and") != _truth(value):
                return value
        return value

    def operand(self, node: Any, dot: Any, *, call: bool = True) -> Any:
        value = self._operand(node, dot)
        if call and callable(value):
            return self.call("method", value, [])
        return value

    def _operand(self, node: Any, dot: Any) -> Any:
        if isinstance(node, _Lit):
            return node.value
        if isinstance(node, _Field):
            return self.walk(dot, node.path)
        if isinstance(node, _Var):
            return self.walk(self.var(node.name, dot), node.path)
        if isinstance(node, _Pipe):
            return self.pipe(node, dot)
        if isinstance(node, _Chain):
            return self.walk(self.operand(node.node, dot), node.path)
        if isinstance(node, _Ident):
            if node.name not in self.funcs and node.name not in ("and", "or"):
                raise TemplateError(f'template: function "{node.name}" not defined')
            return self.command(_Cmd([node]), dot, None)
        raise TemplateError("template: bad operand")  # pragma: no cover

    def var(self, name: str, dot: Any) -> Any:
        if name == "$":
            return self.root
        for vname, value in reversed(self.vars):
            if vname == name:
                return value
        raise TemplateError(f"template: undefined variable: {name}")

    def walk(self, value: Any, path: tuple[str, ...]) -> Any:
        for part in path:
            if isinstance(value, Mapping):
                if part in value:
                    value = value[part]
                elif self.strict:
                    raise TemplateError(f"template: can't evaluate field {part} in "
                                        f"{self.src!r}")
                else:
                    value = _MISSING
            elif value is None or value is _MISSING:
                if self.strict:
                    raise TemplateError(f"template: nil pointer evaluating .{part} in "
                                        f"{self.src!r}")
                value = _MISSING
            else:
                raise TemplateError(f"template: can't evaluate field {part} in type "
                                    f"{type(value).__name__} in {self.src!r}")
        return value

    root: Any = None


@dataclass(slots=True)
class Template:
    """A parsed template; :meth:`execute` renders it on one value."""

    source: str
    strict: bool = False
    funcs: Mapping[str, Callable[..., Any]] = field(default_factory=lambda: FUNCS)
    nodes: list[Any] = field(init=False)

    def __post_init__(self) -> None:
        self.nodes = _Parser(self.source).parse()

    def execute(self, data: Any) -> str:
        ex = _Exec(self.source, strict=self.strict, funcs=self.funcs)
        ex.root = data
        try:
            ex.run(self.nodes, data)
        except (_BreakLoop, _ContinueLoop) as exc:
            raise TemplateError(f"template: break or continue outside range in "
                                f"{self.source!r}") from exc
        except RecursionError as exc:
            raise TemplateError(f"template: too deeply nested: {self.source!r}") from exc
        return "".join(ex.out)


def render(source: str, data: Any, *, strict: bool = False) -> str:
    """Parse ``source`` and execute it on ``data`` (see :class:`Template`)."""
    return Template(source, strict=strict).execute(data)
