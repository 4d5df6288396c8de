"""The parsed form of a display filter: small frozen records, evaluated by ``evaluate``."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Literal:
    """A value as written: ``quoted`` for "strings", else an unquoted word (number, address, bytes)."""

    text: str
    quoted: bool


@dataclass(frozen=True)
class Exists:
    """A bare field or protocol name: true where the field is present (``tcp``, ``tcp.flags.syn``)."""

    field: str


@dataclass(frozen=True)
class Compare:
    """``field OP value`` with OP one of == != < > <= >= contains matches."""

    field: str
    op: str
    value: Literal


@dataclass(frozen=True)
class Not:
    operand: Node


@dataclass(frozen=True)
class And:
    left: Node
    right: Node


@dataclass(frozen=True)
class Or:
    left: Node
    right: Node


Node = Exists | Compare | Not | And | Or
