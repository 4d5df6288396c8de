"""Split display-filter text into tokens.

Only the syntax podcap evaluates itself is recognised; anything else (slices ``[0:2]``, sets
``{80 443}``, functions, ``$`` references ...) raises :class:`NotNative` so the whole filter
goes to tshark, which knows every Wireshark construct.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from podcap.errors import FilterError


class NotNative(Exception):
    """The filter uses something podcap does not evaluate itself: tshark must."""


@dataclass(frozen=True)
class Token:
    kind: str  # "op", "word", "string", "(", ")"
    text: str
    pos: int


# Longest symbols first so "==" is not read as "=" "=".
_SYMBOLS = ("===", "!==", "==", "!=", "<=", ">=", "&&", "||", "<", ">", "!", "~")
# Unquoted literals and field names: letters, digits and the punctuation of addresses,
# CIDRs and byte strings (10.0.0.0/8, fd00::1, 6c:62:74, tcp.flags.syn).
_WORD = re.compile(r"[A-Za-z0-9_.:/\-]+")
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\", '"': '"', "'": "'", "0": "\0"}


def tokenize(text: str) -> list[Token]:
    tokens: list[Token] = []
    pos = 0
    while pos < len(text):
        char = text[pos]
        if char.isspace():
            pos += 1
        elif char in "()":
            tokens.append(Token(char, char, pos))
            pos += 1
        elif char == '"':
            value, pos_after = _read_string(text, pos)
            tokens.append(Token("string", value, pos))
            pos = pos_after
        elif symbol := next((s for s in _SYMBOLS if text.startswith(s, pos)), None):
            tokens.append(Token("op", symbol, pos))
            pos += len(symbol)
        elif match := _WORD.match(text, pos):
            tokens.append(Token("word", match.group(), pos))
            pos = match.end()
        else:
            raise NotNative(f"character {char!r} at position {pos}")
    return tokens


def _read_string(text: str, start: int) -> tuple[str, int]:
    """Read a double-quoted string with Wireshark's escapes (\\", \\\\, \\xhh, \\n ...)."""
    out: list[str] = []
    pos = start + 1
    while pos < len(text):
        char = text[pos]
        if char == '"':
            return "".join(out), pos + 1
        if char != "\\":
            out.append(char)
            pos += 1
            continue
        nxt = text[pos + 1 : pos + 2]
        if nxt == "x" and re.fullmatch(r"[0-9A-Fa-f]{2}", text[pos + 2 : pos + 4]):
            out.append(_byte_char(int(text[pos + 2 : pos + 4], 16)))
            pos += 4
        elif re.fullmatch(r"[0-7]{3}", text[pos + 1 : pos + 4]):
            out.append(_byte_char(int(text[pos + 1 : pos + 4], 8)))
            pos += 4
        elif nxt in _ESCAPES:
            out.append(_ESCAPES[nxt])
            pos += 2
        else:
            raise NotNative(f"escape \\{nxt} at position {pos}")
    raise FilterError(
        f"display filter {text!r}: the string starting at position {start} is not closed"
    )


def _byte_char(value: int) -> str:
    # An escaped byte >= 0x80 is a raw byte, not a code point: keep it as a surrogate so
    # that encoding with "surrogateescape" gives the byte back (see evaluate.payload_bytes).
    return chr(value) if value < 0x80 else chr(0xDC00 + value)
