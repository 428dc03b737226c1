"""The ``html``, ``encoding/csv`` and ``crypto/hmac`` packages of CUE v0.4."""

from __future__ import annotations

import csv
import hashlib
import hmac
import html
import io
from typing import TYPE_CHECKING, Any

from specflow.spec.cue.errors import CueError
from specflow.spec.cue.pkg_more import _bytes_or_str
from specflow.spec.cue.pkg_text import html_escape

if TYPE_CHECKING:
    from specflow.spec.cue import ast as A
    from specflow.spec.cue.evaluator import Evaluator


def _h() -> Any:
    from specflow.spec.cue import builtins

    return builtins


# ---------------------------------------------------------------------------------------------
# html


def escape(s: str) -> str:
    """Go's html.EscapeString."""
    return html_escape(s, nul=False)


def _html_escape(ev: Evaluator, args: list[Any], call: A.Call) -> Any:
    _h()._arity("html.Escape", args, 1)
    return escape(_h()._str(ev, args[0], "html.Escape"))


def _html_unescape(ev: Evaluator, args: list[Any], call: A.Call) -> Any:
    _h()._arity("html.Unescape", args, 1)
    return html.unescape(_h()._str(ev, args[0], "html.Unescape"))


# ---------------------------------------------------------------------------------------------
# encoding/csv


def _needs_quotes(field: str) -> bool:
    if field == "":
        return False
    if field == "\\.":
        return True
    if any(c in field for c in ',"\r\n'):
        return True
    return field[0] in " \t"


def csv_encode(rows: list[list[str]]) -> str:
    """Go's csv.Writer with its defaults (comma, "\\n" line ends)."""
    out: list[str] = []
    for row in rows:
        cells = []
        for f in row:
            if _needs_quotes(f):
                cells.append('"' + f.replace('"', '""') + '"')
            else:
                cells.append(f)
        out.append(",".join(cells) + "\n")
    return "".join(out)


def _csv_encode(ev: Evaluator, args: list[Any], call: A.Call) -> Any:
    _h()._arity("csv.Encode", args, 1)
    rows: list[list[str]] = []
    for row in _h()._list_arcs(ev, args[0], "csv.Encode"):
        cells: list[str] = []
        for col in _h()._list(ev, row, "csv.Encode"):
            if isinstance(col, str):
                cells.append(col)
            else:
                cells.append(_h()._json_text(col))
        rows.append(cells)
    return csv_encode(rows)


def csv_decode(text: str) -> list[list[str]]:
    """Go's csv.Reader.ReadAll: every record has as many fields as the first."""
    try:
        records = list(csv.reader(io.StringIO(text, newline=""), strict=True))
    except csv.Error as e:
        raise CueError(f"csv.Decode: {e}") from None
    records = [r for r in records if r]
    if records:
        n = len(records[0])
        for i, r in enumerate(records):
            if len(r) != n:
                raise CueError(f"csv.Decode: record on line {i + 1}: wrong number of fields")
    return records


def _csv_decode(ev: Evaluator, args: list[Any], call: A.Call) -> Any:
    _h()._arity("csv.Decode", args, 1)
    x = ev.concrete(args[0], call.pos)
    if isinstance(x, bytes):
        x = x.decode("utf-8", "replace")
    if not isinstance(x, str):
        raise CueError(f"csv.Decode: cannot use {ev.show(x)} as bytes")
    return _h().from_native(ev, csv_decode(x))


# ---------------------------------------------------------------------------------------------
# crypto/hmac

_HASHES = {
    "MD5": "md5",
    "SHA1": "sha1",
    "SHA224": "sha224",
    "SHA256": "sha256",
    "SHA384": "sha384",
    "SHA512": "sha512",
    "SHA512_224": "sha512_224",
    "SHA512_256": "sha512_256",
}


def _hmac_sign(ev: Evaluator, args: list[Any], call: A.Call) -> Any:
    _h()._arity("hmac.Sign", args, 3)
    name = _h()._str(ev, args[0], "hmac.Sign")
    algo = _HASHES.get(name)
    if algo is None:
        raise CueError("hmac.Sign: unsupported hash function")
    key = _bytes_or_str(ev, args[1], "hmac.Sign")
    data = _bytes_or_str(ev, args[2], "hmac.Sign")
    return hmac.new(key, data, lambda: hashlib.new(algo)).digest()


def packages() -> dict[str, dict[str, Any]]:
    return {
        "html": {"Escape": _html_escape, "Unescape": _html_unescape},
        "encoding/csv": {"Encode": _csv_encode, "Decode": _csv_decode},
        "crypto/hmac": {"Sign": _hmac_sign, **{k: k for k in _HASHES}},
    }
