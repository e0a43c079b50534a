"""The parser: text written by `print_graph` (or by hand) back into a verified `Graph`.

    graph = parse_graph(text, source="block.rlx", consts={"w": array})

It reads the syntax, resolves names (undefined, forward and duplicate values, const handles) and
checks each op's attributes through its declaration; every other rule is the verifier's, whose
error is re-raised at the line and column of the node it names. Every mistake is a `ParseError`
with a 1-based line and column and what was expected there.

Whitespace (newlines included) only separates tokens; `//` starts a comment to the end of the line.
Parsed nodes get `origin` from a trailing `loc("...")` ("parser" when there is none) and `loc`, the
(line, column) of their `%name`.
"""

from __future__ import annotations

import bisect
import json
import math
import re
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from ..errors import ParseError, VerifyError
from .graph import Graph, Node
from .ops import OPS, POINTWISE, OpTypeError, Step, with_trait
from .types import DTYPES, TensorType
from .verify import SYMBOL, VALUE_NAME, verify

_INT64_MAX = 2**63 - 1
MAX_NESTING = 64   # lists in attributes and dense literals; numpy's own limit on a tensor's rank

# One token per alternative, tried in order at the current position (after whitespace/comments).
_TOKEN = re.compile(r"""
    (?P<value>%[A-Za-z0-9_.$-]*)
  | (?P<symbol>@[A-Za-z0-9_.$-]*)
  | (?P<float>-?(?:\d+\.\d*(?:[eE][-+]?\d+)?|\d+[eE][-+]?\d+|inf\b|nan\b))
  | (?P<int>-?\d+)
  | (?P<string>"(?:[^"\\\n]|\\.)*")
  | (?P<unterminated>")
  | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<punct>[{}()\[\]<>=,:])
""", re.VERBOSE)
_SKIP = re.compile(r"(?:\s+|//[^\n]*)*")
_TYPE_BODY = re.compile(r"[A-Za-z0-9_]*")
_DIM = re.compile(r"(\d+)x")


@dataclass(frozen=True)
class Token:
    kind: str       # value, symbol, float, int, string, ident, punct, eof
    text: str
    start: int      # offsets into the text
    end: int

    def describe(self) -> str:
        if self.kind == "eof":
            return "end of file"
        text = self.text if len(self.text) <= 40 else self.text[:37] + "..."
        return repr(text) if "'" not in text else json.dumps(text)


class _Lexer:
    def __init__(self, text: str, source: str | None):
        self.text, self.source = text, source
        self.line_starts = [0] + [m.end() for m in re.finditer("\n", text)]
        self.pos = 0             # end of the last consumed token
        self._peeked: Token | None = None

    def where(self, offset: int) -> tuple[int, int]:
        line = bisect.bisect_right(self.line_starts, offset)
        return line, offset - self.line_starts[line - 1] + 1

    def error(self, message: str, offset: int) -> ParseError:
        return ParseError(message, *self.where(offset), self.source)

    def peek(self) -> Token:
        if self._peeked is None:
            self._peeked = self._scan(_SKIP.match(self.text, self.pos).end())
        return self._peeked

    def next(self) -> Token:
        tok = self.peek()
        self._peeked = None
        self.pos = tok.end
        return tok

    def raw(self, pattern: re.Pattern) -> re.Match:
        """Match `pattern` right after the last token, with no whitespace skipped (type bodies)."""
        self._peeked = None
        m = pattern.match(self.text, self.pos)
        self.pos = m.end()
        return m

    def _scan(self, start: int) -> Token:
        if start >= len(self.text):
            return Token("eof", "", start, start)
        m = _TOKEN.match(self.text, start)
        if m is None:
            raise self.error(f"unexpected character {self.text[start]!r}", start)
        kind = m.lastgroup
        if kind == "unterminated":
            raise self.error("unterminated string: expected a closing '\"' on the same line", start)
        return Token(kind, m.group(), start, m.end())


@dataclass(frozen=True)
class _Dense:
    """An element of a dense literal as read: a number, or a list of elements."""

    tok: Token
    value: float | list["_Dense"]


@dataclass
class _Stmt:
    """A node as read, before names are resolved."""

    name: Token
    op: Token
    operands: list[Token]
    attrs: dict[str, Any]
    payload: tuple[str, Any, Token] | None     # ("dense", array, tok) or ("handle", name, tok)
    type: TensorType
    origin: str


class _Parser:
    def __init__(self, text: str, source: str | None, consts: Mapping[str, Any] | None, consts_from: str | None):
        self.lex = _Lexer(text, source)
        self.consts = consts
        self.consts_from = consts_from

    # -- tokens --------------------------------------------------------------------------------

    def error(self, message: str, tok: Token) -> ParseError:
        return self.lex.error(message, tok.start)

    def expected(self, what: str, *, in_statement: bool = True) -> ParseError:
        """`expected WHAT, got X` at the offending token; inside a statement whose line ended
        early, just after its last token ("got end of line") rather than on the next line."""
        tok = self.lex.peek()
        last_line = self.lex.where(self.lex.pos)[0]
        if in_statement and tok.kind != "eof" and self.lex.where(tok.start)[0] > last_line:
            return self.lex.error(f"expected {what}, got end of line", self.lex.pos)
        return self.error(f"expected {what}, got {tok.describe()}", tok)

    def at(self, kind: str, text: str | None = None) -> bool:
        tok = self.lex.peek()
        return tok.kind == kind and (text is None or tok.text == text)

    def accept(self, kind: str, text: str | None = None) -> Token | None:
        return self.lex.next() if self.at(kind, text) else None

    def expect(self, kind: str, text: str | None, what: str, *, in_statement: bool = True) -> Token:
        if not self.at(kind, text):
            raise self.expected(what, in_statement=in_statement)
        return self.lex.next()

    def punct(self, char: str, context: str) -> Token:
        return self.expect("punct", char, f"'{char}' {context}")

    # -- the file ------------------------------------------------------------------------------

    def parse(self) -> Graph:
        start = self.expect("ident", "graph", "'graph' at the start of the file", in_statement=False)
        name_tok = self.expect("symbol", None, "the graph's name after 'graph', like @main")
        name = name_tok.text[1:]
        if not SYMBOL.match(name):
            raise self.error(f"invalid graph name {name_tok.text!r}: expected @ and an identifier "
                             "(letters, digits, '_', '.'; not starting with a digit)", name_tok)
        self.punct("{", "to open the graph body")
        stmts: list[_Stmt] = []
        outputs: list[tuple[Token, Token]] = []
        while not self.at("punct", "}"):
            if self.at("value"):
                stmts.append(self.node())
            elif self.at("ident", "output"):
                outputs.append(self.output())
            else:
                raise self.expected("a node ('%name = op ...'), an output ('output @name = %value') "
                                    "or '}' to close the graph", in_statement=False)
        close = self.lex.next()
        if not outputs:
            raise self.error(f"graph @{name} has no outputs: expected at least one 'output @name = %value' "
                             "before '}'", close)
        if self.lex.peek().kind != "eof":
            line, _ = self.lex.where(close.start)
            raise self.error(f"unexpected {self.lex.peek().describe()} after the end of the graph "
                             f"(closed by '}}' on line {line}); expected the end of the file", self.lex.peek())
        return self.build(name, stmts, outputs, start, close)

    def output(self) -> tuple[Token, Token]:
        self.lex.next()
        name = self.expect("symbol", None, "the output's name after 'output', like @out")
        if not SYMBOL.match(name.text[1:]):
            raise self.error(f"invalid output name {name.text!r}: expected @ and an identifier "
                             "(letters, digits, '_', '.'; not starting with a digit)", name)
        self.punct("=", "after the output's name")
        value = self.value_token("the value of the output, like %0")
        return name, value

    def value_token(self, what: str) -> Token:
        tok = self.expect("value", None, what)
        if not VALUE_NAME.match(tok.text[1:]):
            detail = "a name after '%'" if tok.text == "%" else f"a value name, got {tok.text!r}"
            raise self.error(f"expected {detail} (letters, digits, '_', '.', '$', '-'; "
                             "not starting with '.', '$' or '-')", tok)
        return tok

    # -- one node ------------------------------------------------------------------------------

    def node(self) -> _Stmt:
        name = self.value_token("a value name")
        self.punct("=", f"after {name.text}")
        op_tok = self.expect("ident", None, f"an op name after '{name.text} ='")
        opdef = OPS.get(op_tok.text)
        if opdef is None:
            raise self.error(f"unknown op '{op_tok.text}'; known ops: {', '.join(sorted(OPS))}", op_tok)
        label = f"node {name.text} ({op_tok.text})"
        operands = []
        if self.accept("punct", "("):
            if not self.accept("punct", ")"):
                while True:
                    operands.append(self.value_token("an operand like %0"))
                    if self.accept("punct", ")"):
                        break
                    self.punct(",", "or ')' after an operand")
        attrs: dict[str, Any] = {}
        if self.at("punct", "{"):
            attrs = self.attributes(opdef, label)
        try:
            canonical = opdef.normalize_attrs(attrs)
        except OpTypeError as e:  # a missing required attribute: the node is at fault
            raise self.error(f"{label}: {e}", op_tok) from None
        payload = None
        if op_tok.text == "const":
            payload = self.const_payload()
        self.punct(":", "before the result type")
        rtype = self.tensor_type()
        origin = "parser"
        if self.accept("ident", "loc"):
            self.punct("(", "after 'loc'")
            origin = self.string("the provenance as a string, like loc(\"fold-constants\")")
            self.punct(")", "to close loc(...")
        return _Stmt(name, op_tok, operands, canonical, payload, rtype, origin)

    def attributes(self, opdef, label: str) -> dict[str, Any]:
        self.lex.next()
        attrs: dict[str, Any] = {}
        if self.accept("punct", "}"):
            return attrs
        while True:
            key = self.expect("ident", None, "an attribute name")
            if key.text in attrs:
                raise self.error(f"{label}: duplicate attribute '{key.text}'", key)
            if key.text not in opdef.attrs:
                try:  # the declaration words the error and lists the op's attributes
                    opdef.normalize_attrs({key.text: None})
                except OpTypeError as e:
                    raise self.error(f"{label}: {e}", key) from None
            self.punct("=", f"after the attribute name '{key.text}'")
            value_tok = self.lex.peek()
            value = self.attr_value()
            try:  # the declaration decides what the value may be (and widens 1 to 1.0)
                attrs[key.text] = opdef.attrs[key.text].coerce(key.text, value)
            except OpTypeError as e:
                raise self.error(f"{label}: {e}", value_tok) from None
            if self.accept("punct", "}"):
                return attrs
            self.punct(",", "or '}' after an attribute")

    def attr_value(self, depth: int = 0) -> Any:
        tok = self.lex.peek()
        if depth > MAX_NESTING:
            raise self.error(f"lists nested more than {MAX_NESTING} deep", tok)
        if tok.kind == "int":
            value = int(self.lex.next().text)
            if not -_INT64_MAX - 1 <= value <= _INT64_MAX:
                raise self.error(f"integer {tok.text} does not fit in 64 bits", tok)
            return value
        if tok.kind == "float":
            return self.float_value(self.lex.next())
        if tok.kind == "ident" and tok.text in ("true", "false"):
            return self.lex.next().text == "true"
        if tok.kind == "ident":
            return self.step()
        if tok.kind == "string":
            return self.string("")
        if self.accept("punct", "["):
            items = []
            if self.accept("punct", "]"):
                return items
            while True:
                items.append(self.attr_value(depth + 1))
                if self.accept("punct", "]"):
                    return items
                self.punct(",", "or ']' in the list")
        raise self.expected("an attribute value (a number, true, false, a string, a [list] or an op)")

    def step(self) -> Step:
        """An epilogue step: a pointwise op's name, then its attributes in braces if any."""
        op_tok = self.lex.next()
        opdef = OPS.get(op_tok.text)
        if opdef is None or not opdef.has(POINTWISE):
            known = ", ".join(op.name for op in with_trait(POINTWISE))
            what = "unknown op" if opdef is None else "not a pointwise op:"
            raise self.error(f"{what} '{op_tok.text}' in an epilogue; a step is one of {known}", op_tok)
        label = f"epilogue step '{op_tok.text}'"
        attrs = self.attributes(opdef, label) if self.at("punct", "{") else {}
        try:
            canonical = opdef.normalize_attrs(attrs)
        except OpTypeError as e:
            raise self.error(f"{label}: {e}", op_tok) from None
        return Step(op_tok.text, tuple(canonical.items()))

    def float_value(self, tok: Token) -> float:
        value = float(tok.text)
        if math.isinf(value) and "inf" not in tok.text:
            raise self.error(f"number {tok.text} is out of range; write inf or -inf for an infinity", tok)
        return value

    def string(self, what: str) -> str:
        tok = self.expect("string", None, what)
        try:
            return json.loads(tok.text)
        except json.JSONDecodeError as e:
            raise self.lex.error(f"bad escape in string: {e.msg}", tok.start + e.pos) from None

    # -- constants -----------------------------------------------------------------------------

    def const_payload(self) -> tuple[str, Any, Token]:
        if self.at("symbol"):
            tok = self.lex.next()
            if not VALUE_NAME.match(tok.text[1:]):
                raise self.error(f"expected a constant's handle after '@', got {tok.text!r}", tok)
            return "handle", tok.text[1:], tok
        tok = self.expect("ident", "dense", "the constant's data after 'const': dense<...> or a handle like @w")
        self.punct("<", "after 'dense'")
        nested = self.dense_element()
        self.punct(">", "to close dense<...")
        return "dense", self.dense_array(nested), tok

    def dense_element(self, depth: int = 0) -> "_Dense":
        tok = self.lex.peek()
        if depth > MAX_NESTING:
            raise self.error(f"dense literal nested more than {MAX_NESTING} deep", tok)
        if tok.kind in ("int", "float"):
            self.lex.next()
            value = self.float_value(tok)
            with np.errstate(over="ignore"):
                if math.isfinite(value) and np.isinf(np.float32(value)):
                    raise self.error(f"number {tok.text} is out of the float32 range (largest "
                                     f"{np.finfo(np.float32).max!s}); write inf for an infinity", tok)
            return _Dense(tok, value)
        if self.accept("punct", "["):
            items = []
            while True:
                items.append(self.dense_element(depth + 1))
                if self.accept("punct", "]"):
                    return _Dense(tok, items)
                self.punct(",", "or ']' in the dense literal")
        raise self.expected("a number or '[' in the dense literal")

    def dense_array(self, top: "_Dense") -> np.ndarray:
        def shape_of(d: _Dense) -> tuple[int, ...]:
            if not isinstance(d.value, list):
                return ()
            shapes = [shape_of(x) for x in d.value]
            for x, s in zip(d.value, shapes):
                if s != shapes[0]:
                    raise self.error(f"ragged dense literal: this element has shape {list(s)}, the first "
                                     f"one in its list has shape {list(shapes[0])}", x.tok)
            return (len(d.value),) + shapes[0]

        def values(d: _Dense) -> Any:
            return [values(x) for x in d.value] if isinstance(d.value, list) else d.value

        shape_of(top)
        return np.array(values(top), dtype=np.float32)

    # -- types ---------------------------------------------------------------------------------

    def tensor_type(self) -> TensorType:
        self.expect("ident", "tensor", "a tensor type like tensor<2x3xf32>")
        self.punct("<", "after 'tensor'")
        body = self.lex.raw(_TYPE_BODY)
        dims, pos = [], body.start()
        while (m := _DIM.match(body.group(), pos - body.start())) is not None:
            dim = int(m.group(1))
            if dim < 1 or dim > _INT64_MAX:
                raise self.lex.error(f"tensor dimension {m.group(1)} must be a positive integer", pos)
            dims.append(dim)
            pos = body.start() + m.end()
        dtype = self.lex.text[pos:body.end()]
        if dtype not in DTYPES:
            known = ", ".join(DTYPES)
            if not body.group():
                got = repr(self.lex.text[pos]) if pos < len(self.lex.text) else "end of file"
                message = f"expected a shape and element type like 2x3xf32 after 'tensor<', got {got}"
            elif not dtype:
                message = f"expected an element type ({known}) after the last 'x', like tensor<2x3xf32>"
            elif dtype.isdigit():
                message = f"expected 'x' and an element type ({known}) after the last dimension, like tensor<2x3xf32>"
                pos = body.end()
            elif dtype[0].isdigit():
                message = f"bad tensor shape {dtype!r}: expected dimensions and an element type joined by 'x', like 2x3xf32"
            else:
                message = f"unknown element type {dtype!r}; expected one of {known}"
            raise self.lex.error(message, pos)
        if math.prod(dims) > _INT64_MAX:
            raise self.lex.error(f"tensor type with {math.prod(dims)} elements is too large", body.start())
        self.punct(">", "to close the tensor type")
        return TensorType(tuple(dims), dtype)

    # -- names, constants and the verifier -----------------------------------------------------

    def build(self, name: str, stmts: list[_Stmt], outputs: list[tuple[Token, Token]],
              start: Token, close: Token) -> Graph:
        defined: dict[str, Token] = {}
        later = {s.name.text: s.name for s in reversed(stmts)}   # first definition of each name
        used_handles: set[str] = set()
        nodes = []
        for s in stmts:
            value_name = s.name.text[1:]
            if value_name in defined:
                line, col = self.lex.where(defined[value_name].start)
                raise self.error(f"duplicate value name {s.name.text}, already defined at line {line}, "
                                 f"column {col}", s.name)
            for o in s.operands:
                self.resolve(o, defined, later, f"node {s.name.text} ({s.op.text})")
            data = None
            if s.payload is not None:
                kind, payload, tok = s.payload
                if kind == "dense":
                    data = self.check_dense(payload, s, tok)
                else:
                    data = self.lookup(payload, s, tok)
                    used_handles.add(payload)
                data.setflags(write=False)
            defined[value_name] = s.name
            node = Node(value_name, s.op.text, tuple(o.text[1:] for o in s.operands), s.attrs, s.type,
                        data, s.origin, self.lex.where(s.name.start))
            nodes.append(node)
        result: dict[str, str] = {}
        seen_outputs: dict[str, Token] = {}
        for out, value in outputs:
            if out.text in seen_outputs:
                line, col = self.lex.where(seen_outputs[out.text].start)
                raise self.error(f"duplicate output {out.text}, already defined at line {line}, column {col}", out)
            seen_outputs[out.text] = out
            self.resolve(value, defined, {}, f"output {out.text}")
            result[out.text[1:]] = value.text[1:]
        if self.consts:
            unused = [k for k in self.consts if k not in used_handles]
            if unused:
                shown = ", ".join(f"'{k}'" for k in unused[:5]) + (f" and {len(unused) - 5} more" if len(unused) > 5 else "")
                raise self.error(f"{self.consts_from or 'the constants given'} hold(s) {len(unused)} "
                                 f"constant(s) that no 'const @NAME' uses: {shown}", start)
        graph = Graph(name, nodes, result)
        try:
            return verify(graph)
        except VerifyError as e:
            raise self.verify_error(e, close) from None

    def resolve(self, tok: Token, defined: dict[str, Token], later: dict[str, Token], user: str) -> None:
        if tok.text[1:] in defined:
            return
        if tok.text in later:
            line, col = self.lex.where(later[tok.text].start)
            raise self.error(f"{user}: forward reference: {tok.text} is defined later, at line {line}, "
                             f"column {col}; operands must be defined before their use", tok)
        raise self.error(f"{user}: use of undefined value {tok.text}", tok)

    def check_dense(self, data: np.ndarray, s: _Stmt, tok: Token) -> np.ndarray:
        if data.shape != s.type.shape:
            raise self.error(f"node {s.name.text} (const): the dense literal has shape {list(data.shape)}, "
                             f"but the declared type is {s.type}", tok)
        return data

    def lookup(self, handle: str, s: _Stmt, tok: Token) -> np.ndarray:
        label = f"node {s.name.text} (const)"
        if self.consts is None:
            where = self.consts_from or "no constants were given (pass consts= to parse_graph, or use load_graph)"
            raise self.error(f"{label}: missing constant @{handle}: {where}", tok)
        if handle not in self.consts:
            where = self.consts_from or "the constants given"
            raise self.error(f"{label}: missing constant @{handle}: not in {where}", tok)
        array = self.consts[handle]
        if not isinstance(array, np.ndarray):
            raise self.error(f"{label}: constant @{handle} is a {type(array).__name__}, expected a numpy array", tok)
        want = s.type
        if array.dtype != want.np_dtype or array.shape != want.shape:
            raise self.error(f"{label}: constant @{handle} is {array.dtype} of shape {list(array.shape)}, "
                             f"but the declared type is {want} ({want.np_dtype} of shape {list(want.shape)})", tok)
        return np.array(array, copy=True)

    def verify_error(self, e: VerifyError, close: Token) -> ParseError:
        """The verifier names a parsed node with its line and column: report the error there."""
        message = str(e)
        m = re.search(r" at line (\d+), column (\d+)", message)
        if m is None:
            return self.error(message, close)
        message = message[:m.start()] + message[m.end():]
        return ParseError(message, int(m.group(1)), int(m.group(2)), self.lex.source)


def parse_graph(text: str, *, source: str | None = None,
                consts: Mapping[str, np.ndarray] | None = None) -> Graph:
    """Read a graph written by `print_graph`; verified. `consts` resolves `const @HANDLE` nodes.

    `source` names the text in error messages (a file name). Every constant given must be used.
    """
    return _parse(text, source, consts, None)


def _parse(text: str, source: str | None, consts: Mapping[str, np.ndarray] | None,
           consts_from: str | None) -> Graph:
    if not isinstance(text, str):
        raise TypeError(f"parse_graph takes the text as a str, got {type(text).__name__}")
    return _Parser(text, source, consts, consts_from).parse()
