"""The parser: text written by `print_graph` (or by hand) back into a verified `Graph`.

    graph = parse_graph(text, source="block.rlx", consts={"w": array})

It reads the syntax, resolves names (undefined, forward and duplicate values, const handles) and
checks each op's attributes through its declaration; every other rule is the verifier's, whose
error is re-raised at the line and column of the node it names. Every mistake is a `ParseError`
with a 1-based line and column and what was expected there, found in time linear in the text's
length (whatever the text: huge numbers, long dimension lists, deep nesting, long strings and
lines); types over the size limit of `rlxpy.ir.types` are such mistakes too.

A `const @HANDLE` takes its data from the optional resources section after the graph's closing
brace (`@HANDLE = "BASE64"`, one per line: the raw little-endian float32 bytes, as
`print_graph(..., consts="resources")` writes them) or from the `consts` given (the safetensors
file beside a .rlx for `load_graph`), never from both; every resource and every constant given
must be used, and a resource must hold exactly the bytes of the const's type.

Whitespace (newlines included) only separates tokens; `//` starts a comment to the end of the line.
Parsed nodes get `origin` from a trailing `loc("...")` ("parser" when there is none) and `loc`, the
(line, column) of their `%name`.
"""

from __future__ import annotations

import binascii
import bisect
import json
import math
import re
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from ..errors import ParseError, VerifyError, clip
from .graph import Graph, Node
from .ops import OPS, POINTWISE, OpTypeError, Step, with_trait
from .types import DTYPES, LIMIT_TEXT, MAX_BYTES, MAX_RANK, TensorType, TypeLimitError
from .verify import SYMBOL, VALUE_NAME, verify

_INT64_MIN, _INT64_MAX = -2**63, 2**63 - 1
_INT64_DIGITS = len(str(_INT64_MAX))
_DIM_DIGITS = len(str(MAX_BYTES))     # a dimension with more digits is over the size limit by itself
# A dense literal nests one list per dimension, so its depth is a tensor's rank. Attribute lists
# never nest at all; the same depth bounds the recursion that reads them (and says so clearly).
MAX_NESTING = MAX_RANK

# One token per alternative, tried in order at the current position (after whitespace/comments).
# Every repeat is possessive (`*+`, `++`): nothing is ever given back, so a token is matched in
# time linear in its length (a repeated group that may backtrack costs Python's engine far more
# than linear time on a long string or a file of many comment lines).
_TOKEN = re.compile(r"""
    (?P<value>%[A-Za-z0-9_.$-]*+)
  | (?P<symbol>@[A-Za-z0-9_.$-]*+)
  | (?P<float>-?(?:\d++\.\d*+(?:[eE][-+]?\d++)?|\d++[eE][-+]?\d++|inf\b|nan\b))
  | (?P<int>-?\d++)
  | (?P<string>"[^"\\\n]*+(?:\\.[^"\\\n]*+)*+")
  | (?P<unterminated>")
  | (?P<ident>[A-Za-z_][A-Za-z0-9_]*+)
  | (?P<punct>[{}()\[\]<>=,:])
""", re.VERBOSE)
_SKIP = re.compile(r"(?:\s++|//[^\n]*+)*+")
_TYPE_BODY = re.compile(r"[A-Za-z0-9_]*+")
_DIM = re.compile(r"(\d+)x")
_NOT_BASE64 = re.compile(r"[^A-Za-z0-9+/=]")


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


@dataclass(frozen=True)
class _Resource:
    """One entry of the resources section: where its name is, and the bytes it holds."""

    tok: Token
    data: bytes


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
        self.resources: dict[str, _Resource] = {}

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
            raise self.error(f"invalid graph name {clip(name_tok.text)!r}: expected @ and an identifier "
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
        after, expected = "the graph", "'resources {' or the end of the file"
        if self.at("ident", "resources"):
            self.resources = self.resources_section()
            after, expected = "the resources section", "the end of the file"
        if self.lex.peek().kind != "eof":
            line, _ = self.lex.where(self.lex.pos - 1)
            raise self.error(f"unexpected {self.lex.peek().describe()} after the end of {after} "
                             f"(closed by '}}' on line {line}); expected {expected}", self.lex.peek())
        return self.build(name, stmts, outputs, start, close)

    def resources_section(self) -> dict[str, "_Resource"]:
        """`resources { @NAME = "BASE64" ... }`: the raw little-endian float32 bytes of handle consts."""
        self.lex.next()
        self.punct("{", "after 'resources'")
        found: dict[str, _Resource] = {}
        while not self.accept("punct", "}"):
            tok = self.lex.peek()
            if tok.kind != "symbol":
                raise self.expected("a resource ('@name = \"base64\"') or '}' to close the resources section",
                                    in_statement=False)
            self.lex.next()
            if not VALUE_NAME.match(tok.text[1:]):
                raise self.error(f"expected a constant's handle after '@', got {clip(tok.text)!r}", tok)
            if tok.text[1:] in found:
                line, col = self.lex.where(found[tok.text[1:]].tok.start)
                raise self.error(f"duplicate resource {clip(tok.text)}, already defined at line {line}, column {col}", tok)
            self.punct("=", f"after the resource name {clip(tok.text)}")
            found[tok.text[1:]] = _Resource(tok, self.base64_string(tok.text))
        return found

    def base64_string(self, name: str) -> bytes:
        """A double-quoted base64 string on one line, decoded. Scanned with str.find and checked by
        binascii (the data may be hundreds of megabytes): no regex walks it unless it is bad."""
        text = self.lex.text
        start = _SKIP.match(text, self.lex.pos).end()
        if not text.startswith('"', start):
            raise self.expected(f"the data of resource {clip(name)} as a base64 string in double quotes")
        end = text.find('"', start + 1)
        newline = text.find("\n", start + 1, len(text) if end < 0 else end)
        if end < 0 or newline >= 0:
            raise self.lex.error("unterminated string: expected a closing '\"' on the same line", start)
        self.lex.pos = end + 1
        try:
            return binascii.a2b_base64(text[start + 1:end], strict_mode=True)
        except (binascii.Error, ValueError) as e:
            bad = _NOT_BASE64.search(text, start + 1, end)
            if bad is not None:
                raise self.lex.error(f"resource {clip(name)}: unexpected character {bad.group()!r} in base64 data; "
                                     "expected A-Z, a-z, 0-9, '+', '/' and '=' padding at the end", bad.start()) from None
            raise self.lex.error(f"resource {clip(name)}: bad base64 data ({e}): expected groups of 4 characters, "
                                 "the last one padded with '='", start) from None

    def output(self) -> tuple[Token, Token]:
        self.lex.next()
        name = self.expect("symbol", None, "the output's name after 'output', like @out")
        if not SYMBOL.match(name.text[1:]):
            raise self.error(f"invalid output name {clip(name.text)!r}: expected @ and an identifier "
                             "(letters, digits, '_', '.'; not starting with a digit)", name)
        self.punct("=", "after the output's name")
        value = self.value_token("the value of the output, like %0")
        return name, value

    def value_token(self, what: str) -> Token:
        tok = self.expect("value", None, what)
        if not VALUE_NAME.match(tok.text[1:]):
            detail = "a name after '%'" if tok.text == "%" else f"a value name, got {clip(tok.text)!r}"
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
            raise self.error(f"unknown op '{clip(op_tok.text)}'; known ops: {', '.join(sorted(OPS))}", op_tok)
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
                raise self.error(f"{label}: duplicate attribute '{clip(key.text)}'", key)
            if key.text not in opdef.attrs:
                try:  # the declaration words the error and lists the op's attributes
                    opdef.normalize_attrs({clip(key.text): None})
                except OpTypeError as e:
                    raise self.error(f"{label}: {e}", key) from None
            self.punct("=", f"after the attribute name '{clip(key.text)}'")
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
            self.lex.next()
            # count the digits first: int() of thousands of digits is slow, and refused past 4300
            digits = tok.text.lstrip("-").lstrip("0") or "0"
            value = None
            if len(digits) <= _INT64_DIGITS:
                value = -int(digits) if tok.text.startswith("-") else int(digits)
            if value is None or not _INT64_MIN <= value <= _INT64_MAX:
                raise self.error(f"integer {clip(tok.text)} does not fit in 64 bits", tok)
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
            raise self.error(f"number {clip(tok.text)} is out of range; write inf or -inf for an infinity", tok)
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
                raise self.error(f"expected a constant's handle after '@', got {clip(tok.text)!r}", tok)
            return "handle", tok.text[1:], tok
        tok = self.expect("ident", "dense", "the constant's data after 'const': dense<...> or a handle like @w")
        self.punct("<", "after 'dense'")
        nested = self.dense_element()
        self.punct(">", "to close dense<...")
        return "dense", self.dense_array(nested), tok

    def dense_element(self, depth: int = 0) -> "_Dense":
        tok = self.lex.peek()
        if depth > MAX_NESTING:
            raise self.error(f"dense literal nested more than {MAX_NESTING} deep: a tensor has {LIMIT_TEXT}", tok)
        if tok.kind in ("int", "float"):
            self.lex.next()
            value = self.float_value(tok)
            with np.errstate(over="ignore"):
                if math.isfinite(value) and np.isinf(np.float32(value)):
                    raise self.error(f"number {clip(tok.text)} is out of the float32 range (largest "
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
        text, start, end = self.lex.text, body.start(), body.end()
        dims, pos = [], start
        while (m := _DIM.match(text, pos, end)) is not None:   # in place: no copy of the body
            digits = m.group(1)
            if len(dims) == MAX_RANK:
                raise self.lex.error(f"tensor type with more than {MAX_RANK} dimensions: a tensor has {LIMIT_TEXT}", pos)
            significant = digits.lstrip("0") or "0"
            if len(significant) > _DIM_DIGITS:
                raise self.lex.error(f"tensor dimension {clip(digits)} is over the size limit: a tensor has "
                                     f"{LIMIT_TEXT}", pos)
            dim = int(significant)
            if dim < 1:
                raise self.lex.error(f"tensor dimension {clip(digits)} must be a positive integer", pos)
            dims.append(dim)
            pos = m.end()
        dtype = text[pos:end]
        if dtype not in DTYPES:
            known = ", ".join(DTYPES)
            if start == end:
                got = repr(text[pos]) if pos < len(text) else "end of file"
                message = f"expected a shape and element type like 2x3xf32 after 'tensor<', got {got}"
            elif not dtype:
                message = f"expected an element type ({known}) after the last 'x', like tensor<2x3xf32>"
            elif dtype.isdigit():
                message = f"expected 'x' and an element type ({known}) after the last dimension, like tensor<2x3xf32>"
                pos = end
            elif dtype[0].isdigit():
                message = f"bad tensor shape {clip(dtype)!r}: expected dimensions and an element type joined by 'x', like 2x3xf32"
            else:
                message = f"unknown element type {clip(dtype)!r}; expected one of {known}"
            raise self.lex.error(message, pos)
        try:
            rtype = TensorType(tuple(dims), dtype)
        except TypeLimitError as e:
            raise self.lex.error(str(e), start) from None
        self.punct(">", "to close the tensor type")
        return rtype

    # -- names, constants and the verifier -----------------------------------------------------

    def build(self, name: str, stmts: list[_Stmt], outputs: list[tuple[Token, Token]],
              start: Token, close: Token) -> Graph:
        defined: dict[str, Token] = {}
        later = {s.name.text: s.name for s in reversed(stmts)}   # first definition of each name
        used_handles: set[str] = set()
        for handle, res in self.resources.items():
            if self.consts is not None and handle in self.consts:
                raise self.error(f"resource {res.tok.text} is given twice: by this resources section and by "
                                 f"{self.consts_from or 'the constants given'}; expected it in only one of them",
                                 res.tok)
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
        for handle, res in self.resources.items():
            if handle not in used_handles:
                raise self.error(f"resource {res.tok.text} is not used: expected a const that names it "
                                 f"('%name = const {res.tok.text} : tensor<...>')", res.tok)
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
        if handle in self.resources:
            return self.resource_array(self.resources[handle], s)
        nowhere = "not in the resources section, and " if self.resources else ""
        if self.consts is None:
            where = self.consts_from or ("no constants were given (print the graph with consts=\"resources\", "
                                         "pass consts= to parse_graph, or use load_graph)")
            raise self.error(f"{label}: missing constant @{handle}: {nowhere}{where}", tok)
        if handle not in self.consts:
            where = self.consts_from or "the constants given"
            raise self.error(f"{label}: missing constant @{handle}: {nowhere}not in {where}", tok)
        array = self.consts[handle]
        if not isinstance(array, np.ndarray):
            raise self.error(f"{label}: constant @{handle} is a {type(array).__name__}, expected a numpy array", tok)
        want = s.type
        if array.dtype != want.np_dtype or array.shape != want.shape:
            raise self.error(f"{label}: constant @{handle} is {array.dtype} of shape {list(array.shape)}, "
                             f"but the declared type is {want} ({want.np_dtype} of shape {list(want.shape)})", tok)
        return np.array(array, copy=True)

    def resource_array(self, res: _Resource, s: _Stmt) -> np.ndarray:
        want = s.type
        if len(res.data) != 4 * want.numel:
            line, col = self.lex.where(s.name.start)
            raise self.error(f"resource {res.tok.text} holds {len(res.data)} bytes, but node {s.name.text} (const) "
                             f"at line {line}, column {col} is {want}: expected {4 * want.numel} bytes "
                             f"({want.numel} little-endian float32 values)", res.tok)
        return np.frombuffer(res.data, dtype="<f4").astype(np.float32, copy=False).reshape(want.shape)

    def verify_error(self, e: VerifyError, close: Token) -> ParseError:
        """The verifier names a parsed node with its line and column: report the error there."""
        message = str(e)
        m = re.search(r" at line (\d+), column (\d+)", message)
        if m is None:
            return self.error(message, close)
        message = message[:m.start()] + message[m.end():]
        return ParseError(message, int(m.group(1)), int(m.group(2)), self.lex.source)


def parse_graph(text: str, *, source: str | None = None,
                consts: Mapping[str, np.ndarray] | None = None, consts_from: str | None = None) -> Graph:
    """Read a graph written by `print_graph`; verified.

    A `const @HANDLE` node takes its data from the text's resources section (written by
    `print_graph(graph, consts="resources")`) or else from `consts`; each handle must come from
    exactly one of them, and every resource and every constant given must be used. `source` names
    the text in error messages (a file name); `consts_from` says in them where `consts` came from
    (or, with no consts, why there are none).
    """
    return _parse(text, source, consts, consts_from)


def _parse(text: str, source: str | None, consts: Mapping[str, np.ndarray] | None,
           consts_from: str | None) -> Graph:
    if not isinstance(text, str):
        raise TypeError(f"parse_graph takes the text as a str, got {type(text).__name__}")
    return _Parser(text, source, consts, consts_from).parse()
