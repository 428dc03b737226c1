"""Tokenizer for the CUE language subset understood by specflow."""

from __future__ import annotations

import re
from decimal import Decimal

from specflow.spec.cue.errors import CueError, Pos

# Token kinds
IDENT = "IDENT"
INT = "INT"
FLOAT = "FLOAT"
STRING = "STRING"
BYTES = "BYTES"
OP = "OP"
KEYWORD = "KEYWORD"
ATTR = "ATTR"
COMMA = ","
EOF = "EOF"

KEYWORDS = frozenset({"package", "import", "for", "in", "if", "let"})

# Tokens after which a newline acts as a comma.
_SEMI_OPS = frozenset({")", "]", "}", "...", "_|_"})

_OPERATORS = (
    "...",
    "_|_",
    "&&",
    "||",
    "==",
    "!=",
    "<=",
    ">=",
    "=~",
    "!~",
    "{",
    "}",
    "[",
    "]",
    "(",
    ")",
    ":",
    ",",
    ".",
    "?",
    "!",
    "&",
    "|",
    "*",
    "+",
    "-",
    "/",
    "<",
    ">",
    "=",
)

_OPS2 = frozenset(op for op in _OPERATORS if len(op) == 2)
_OPS1 = frozenset(op for op in _OPERATORS if len(op) == 1)
_COLON_NEXT_RE = re.compile(r"(?:[ \t\r\n\ufeff]++|//[^\n]*+)*+:(?!:)")
_SKIP_RE = re.compile(r"(?:[ \t\r\ufeff]+|//[^\n]*)*")
# identifiers, including #Definition, _hidden and _#hiddenDefinition
_IDENT_RE = re.compile(r"(?:_#|#)?(?:[^\W\d]|\$)(?:\w|\$)*|#(?![#\"'])")

_MULTIPLIERS = {"K": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15}

_SIMPLE_ESCAPES = {
    "a": "\a",
    "b": "\b",
    "f": "\f",
    "n": "\n",
    "r": "\r",
    "t": "\t",
    "v": "\v",
    "\\": "\\",
    "/": "/",
    '"': '"',
    "'": "'",
}


_NO_PARTS: list[str | list[Token]] = []


class Token:
    """A token. STRING/BYTES tokens carry their literal pieces and interpolated token lists
    in ``parts``; number tokens their value in ``number``."""

    __slots__ = ("kind", "value", "pos", "parts", "number")

    def __init__(
        self,
        kind: str,
        value: str,
        pos: Pos,
        parts: list[str | list[Token]] | None = None,
        number: int | Decimal | None = None,
    ) -> None:
        self.kind = kind
        self.value = value
        self.pos = pos
        self.parts = _NO_PARTS if parts is None else parts
        self.number = number


def _is_ident_start(c: str) -> bool:
    return c.isalpha() or c == "_" or c == "$"


def _is_ident_char(c: str) -> bool:
    return c.isalnum() or c == "_" or c == "$"


class Lexer:
    def __init__(self, text: str, filename: str) -> None:
        self.text = text
        self.filename = filename
        self.i = 0
        self.line = 1
        self.line_start = 0

    # -- helpers -------------------------------------------------------------------------------
    def pos_at(self, i: int) -> Pos:
        # Line/column for an index at or after the current line start.
        line = self.line
        start = self.line_start
        if i < start:
            line = self.text.count("\n", 0, i) + 1
            start = self.text.rfind("\n", 0, i) + 1
        return Pos(self.filename, line, i - start + 1)

    def error(self, msg: str, i: int | None = None) -> CueError:
        return CueError(msg, pos=[self.pos_at(self.i if i is None else i)])

    def _advance_newlines(self, start: int, end: int) -> None:
        n = self.text.count("\n", start, end)
        if n:
            self.line += n
            self.line_start = self.text.rfind("\n", start, end) + 1

    # -- main loop -----------------------------------------------------------------------------
    def tokens(self, stop_at_paren: bool = False) -> list[Token]:
        """Tokenize; with stop_at_paren, stop at the ')' closing an interpolation."""
        out: list[Token] = []
        append = out.append
        text = self.text
        n = len(text)
        fname = self.filename
        depth = 0
        semi = False
        skip = _SKIP_RE.match
        ident = _IDENT_RE.match
        while True:
            # skip blanks and comments; newlines may end a declaration
            while True:
                sm = skip(text, self.i)
                if sm is not None:
                    self.i = sm.end()
                if self.i < n and text[self.i] == "\n":
                    if semi and not stop_at_paren and not self._colon_next(self.i + 1):
                        append(
                            Token(COMMA, "\n", Pos(fname, self.line, self.i - self.line_start + 1))
                        )
                    semi = False
                    self.i += 1
                    self.line += 1
                    self.line_start = self.i
                    continue
                break
            start = self.i
            if start >= n:
                if stop_at_paren:
                    raise self.error("unterminated string interpolation")
                if semi:
                    append(Token(COMMA, "", self.pos_at(start)))
                append(Token(EOF, "", self.pos_at(start)))
                return out
            pos = Pos(fname, self.line, start - self.line_start + 1)
            c = text[start]
            m = ident(text, start)
            if m is not None:
                word = m.group()
                self.i = m.end()
                if word == "_" and text.startswith("|_", self.i):
                    self.i += 2
                    append(Token(OP, "_|_", pos))
                    semi = True
                elif word in KEYWORDS:
                    append(Token(KEYWORD, word, pos))
                    semi = False
                else:
                    append(Token(IDENT, word, pos))
                    semi = True
                continue
            if c == "#" or c == "'" or c == '"':
                j = start
                while j < n and text[j] == "#":
                    j += 1
                if j < n and text[j] in "\"'":
                    append(self._string(j - start))
                    semi = True
                    continue
                raise self.error(f"illegal character {c!r}")
            if c.isdigit() or (c == "." and start + 1 < n and text[start + 1].isdigit()):
                append(self._number())
                semi = True
                continue
            if c == "@":
                self._attribute()
                append(Token(ATTR, text[start : self.i], pos))
                semi = True
                continue
            if text.startswith("...", start):
                op = "..."
            elif text[start : start + 2] in _OPS2:
                op = text[start : start + 2]
            elif c in _OPS1:
                op = c
            else:
                raise self.error(f"illegal character {c!r}")
            self.i = start + len(op)
            if stop_at_paren:
                if op == "(":
                    depth += 1
                elif op == ")":
                    if depth == 0:
                        append(Token(EOF, "", pos))
                        return out
                    depth -= 1
            append(Token(COMMA if op == "," else OP, op, pos))
            semi = op in _SEMI_OPS

    def _colon_next(self, i: int) -> bool:
        """Whether the next token after position ``i`` is a ':' (a label continued on the
        next line, as in JSON written with leading commas)."""
        return _COLON_NEXT_RE.match(self.text, i) is not None

    def _attribute(self) -> None:
        text = self.text
        n = len(text)
        k = self.i + 1
        while k < n and (_is_ident_char(text[k]) or text[k] == "#"):
            k += 1
        if k >= n or text[k] != "(":
            raise self.error("invalid attribute: expected '('", k)
        depth = 0
        while k < n:
            ch = text[k]
            if ch == "(":
                depth += 1
            elif ch == ")":
                depth -= 1
                if depth == 0:
                    self._advance_newlines(self.i, k)
                    self.i = k + 1
                    return
            elif ch == '"':
                k += 1
                while k < n and text[k] != '"':
                    if text[k] == "\\":
                        k += 1
                    k += 1
            k += 1
        raise self.error("unterminated attribute")

    def _number(self) -> Token:
        text = self.text
        n = len(text)
        start = self.i
        pos = self.pos_at(start)
        k = start
        if text.startswith(("0x", "0X", "0o", "0O", "0b", "0B"), k):
            base = {"x": 16, "o": 8, "b": 2}[text[k + 1].lower()]
            k += 2
            s = k
            while k < n and (text[k].isalnum() or text[k] == "_"):
                k += 1
            digits = text[s:k].replace("_", "")
            try:
                val = int(digits, base)
            except ValueError:
                raise self.error(f"invalid number literal {text[start:k]!r}", start) from None
            self.i = k
            return Token(INT, text[start:k], pos, number=val)
        is_float = False
        while k < n and (text[k].isdigit() or text[k] == "_"):
            k += 1
        if k < n and text[k] == "." and not text.startswith("...", k):
            if (
                k + 1 < n
                and text[k + 1].isdigit()
                or not (k + 1 < n and (_is_ident_start(text[k + 1])))
            ):
                is_float = True
                k += 1
                while k < n and (text[k].isdigit() or text[k] == "_"):
                    k += 1
        if k < n and text[k] in "eE":
            m = k + 1
            if m < n and text[m] in "+-":
                m += 1
            if m < n and text[m].isdigit():
                is_float = True
                k = m
                while k < n and text[k].isdigit():
                    k += 1
        lit = text[start:k].replace("_", "")
        mult = 0
        if k < n and text[k] in _MULTIPLIERS:
            mult = _MULTIPLIERS[text[k]]
            k += 1
            if k < n and text[k] == "i":
                exp = {10**3: 1, 10**6: 2, 10**9: 3, 10**12: 4, 10**15: 5}[mult]
                mult = 1024**exp
                k += 1
        if k < n and _is_ident_char(text[k]):
            raise self.error(f"invalid number literal {text[start : k + 1]!r}", start)
        self.i = k
        try:
            if mult:
                d = Decimal(lit) * mult
                if d != d.to_integral_value():
                    raise self.error(f"invalid number literal {text[start:k]!r}", start)
                return Token(INT, text[start:k], pos, number=int(d))
            if is_float:
                return Token(FLOAT, text[start:k], pos, number=Decimal(lit))
            if len(lit) > 1 and lit[0] == "0" and lit.isdigit():
                # legacy octal is not valid CUE
                raise self.error(f"invalid number literal {lit!r}: leading zero", start)
            return Token(INT, text[start:k], pos, number=int(lit))
        except (ValueError, ArithmeticError):
            raise self.error(f"invalid number literal {text[start:k]!r}", start) from None

    def _string(self, hashes: int) -> Token:
        text = self.text
        n = len(text)
        start = self.i
        pos = self.pos_at(start)
        k = start + hashes
        quote = text[k]
        multi = text.startswith(quote * 3, k)
        if multi:
            k += 3
            nl = text.find("\n", k)
            if nl < 0 or text[k:nl].strip():
                raise self.error("multiline string must start with a newline", k)
            k = nl + 1
            self._advance_newlines(start, k)
            closing = quote * 3 + "#" * hashes
        else:
            k += 1
            closing = quote + "#" * hashes
        esc = "\\" + "#" * hashes
        parts: list[str | list[Token]] = []
        buf: list[str] = []
        while True:
            if k >= n:
                raise self.error("string literal not terminated", start)
            c = text[k]
            if c == "\n" and not multi:
                raise self.error("string literal not terminated", start)
            if text.startswith(closing, k):
                k += len(closing)
                break
            if c == "\\" and text.startswith(esc, k):
                k += len(esc)
                if k >= n:
                    raise self.error("string literal not terminated", start)
                e = text[k]
                if e == "(":
                    if buf:
                        parts.append("".join(buf))
                        buf = []
                    self._advance_newlines(start, k)
                    self.i = k + 1
                    sub = self.tokens(stop_at_paren=True)
                    parts.append(sub)
                    k = self.i
                    start = k  # newlines before k are accounted for
                    continue
                if e in _SIMPLE_ESCAPES:
                    buf.append(_SIMPLE_ESCAPES[e])
                    k += 1
                elif e == "u" or e == "U":
                    width = 4 if e == "u" else 8
                    hexs = text[k + 1 : k + 1 + width]
                    if len(hexs) != width or any(h not in "0123456789abcdefABCDEF" for h in hexs):
                        raise self.error("invalid escape sequence", k)
                    buf.append(chr(int(hexs, 16)))
                    k += 1 + width
                elif e == "x" and quote == "'":
                    hexs = text[k + 1 : k + 3]
                    try:
                        buf.append(chr(int(hexs, 16)))
                    except ValueError:
                        raise self.error("invalid escape sequence", k) from None
                    k += 3
                elif e in "01234567" and quote == "'":
                    octs = text[k : k + 3]
                    try:
                        buf.append(chr(int(octs, 8)))
                    except ValueError:
                        raise self.error("invalid escape sequence", k) from None
                    k += 3
                elif multi and e == "\n":
                    k += 1
                else:
                    raise self.error(f"unknown escape sequence '\\{e}'", k)
                continue
            buf.append(c)
            k += 1
        if buf:
            parts.append("".join(buf))
        self._advance_newlines(start, k)
        self.i = k
        if multi:
            parts = _strip_multiline(parts, pos)
        kind = BYTES if quote == "'" else STRING
        return Token(kind, "", pos, parts=parts)


def _strip_multiline(parts: list[str | list[Token]], pos: Pos) -> list[str | list[Token]]:
    """Remove the closing-quote indentation from every line of a multi-line string."""
    last = parts[-1] if parts else ""
    if not isinstance(last, str):
        raise CueError("invalid multiline string: closing quotes on their own line", pos=[pos])
    nl = last.rfind("\n")
    indent = last[nl + 1 :]
    if indent.strip():
        raise CueError("closing quote of multiline string must be on its own line", pos=[pos])
    trimmed_last = last[:nl] if nl >= 0 else ""
    body: list[str | list[Token]] = list(parts[:-1])
    if nl >= 0:
        body.append(trimmed_last)
    elif parts:
        # the whole last literal piece was indentation: the string ended right after a newline
        # of a previous piece or is empty
        if body and isinstance(body[-1], str) and body[-1].endswith("\n"):
            body[-1] = body[-1][:-1]
    out: list[str | list[Token]] = []
    at_line_start = True
    for p in body:
        if isinstance(p, str):
            lines = p.split("\n")
            res = []
            for idx, ln in enumerate(lines):
                if idx > 0 or at_line_start:
                    if ln.startswith(indent):
                        ln = ln[len(indent) :]
                    elif ln.strip():
                        raise CueError(
                            "invalid whitespace in multiline string: inconsistent indentation",
                            pos=[pos],
                        )
                    else:
                        ln = ""
                res.append(ln)
            out.append("\n".join(res))
            at_line_start = p.endswith("\n")
        else:
            out.append(p)
            at_line_start = False
    return out


def tokenize(text: str, filename: str) -> list[Token]:
    return Lexer(text, filename).tokens()
