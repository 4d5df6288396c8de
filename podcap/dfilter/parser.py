"""Parse tokens into nodes with Wireshark's precedence: ``not`` > ``and`` > ``or``.

Grammar (the subset podcap evaluates; tshark takes the rest)::

    expr    := and_expr (("||" | "or") and_expr)*
    and_expr:= unary (("&&" | "and") unary)*
    unary   := ("!" | "not") unary | "(" expr ")" | FIELD [OP VALUE]
"""

from __future__ import annotations

from podcap.dfilter.lexer import NotNative, Token, tokenize
from podcap.dfilter.nodes import And, Compare, Exists, Literal, Node, Not, Or
from podcap.errors import FilterError

_OPERATORS = {
    "==": "==", "eq": "==", "!=": "!=", "ne": "!=",
    "<": "<", "lt": "<", ">": ">", "gt": ">", "<=": "<=", "le": "<=", ">=": ">=", "ge": ">=",
    "contains": "contains", "matches": "matches", "~": "matches",
}  # fmt: skip
_OR = {"||", "or"}
_AND = {"&&", "and"}
_NOT = {"!", "not"}
_KEYWORDS = _OR | _AND | _NOT | set(_OPERATORS)


def parse(text: str) -> Node:
    """Parse display-filter text; raise NotNative for syntax podcap leaves to tshark."""
    parser = _Parser(text, tokenize(text))
    if not parser.tokens:
        raise FilterError("the display filter is empty")
    node = parser.expr()
    if parser.peek() is not None:
        parser.fail(parser.peek(), "unexpected")
    return node


class _Parser:
    def __init__(self, text: str, tokens: list[Token]):
        self.text = text
        self.tokens = tokens
        self.index = 0

    def peek(self) -> Token | None:
        return self.tokens[self.index] if self.index < len(self.tokens) else None

    def take(self) -> Token:
        token = self.peek()
        if token is None:
            raise NotNative("filter ends early")
        self.index += 1
        return token

    def accept(self, words: set[str]) -> bool:
        token = self.peek()
        if token is not None and token.kind in ("op", "word") and token.text.lower() in words:
            self.index += 1
            return True
        return False

    def fail(self, token: Token, what: str):
        # Not ours to judge: tshark gives the authoritative message, or says it is fine.
        raise NotNative(f"{what} {token.text!r} at position {token.pos}")

    def expr(self) -> Node:
        node = self.and_expr()
        while self.accept(_OR):
            node = Or(node, self.and_expr())
        return node

    def and_expr(self) -> Node:
        node = self.unary()
        while self.accept(_AND):
            node = And(node, self.unary())
        return node

    def unary(self) -> Node:
        if self.accept(_NOT):
            return Not(self.unary())
        token = self.take()
        if token.kind == "(":
            node = self.expr()
            if self.take().kind != ")":
                self.fail(token, "unbalanced parenthesis")
            return node
        if token.kind != "word" or token.text.lower() in _KEYWORDS:
            self.fail(token, "unexpected")
        return self.comparison(token.text)

    def comparison(self, field: str) -> Node:
        token = self.peek()
        op = None
        if token is not None and token.kind in ("op", "word"):
            op = _OPERATORS.get(token.text.lower())
        if op is None:
            return Exists(field)
        self.index += 1
        value = self.take()
        if value.kind not in ("word", "string"):
            self.fail(value, "unexpected")
        return Compare(field, op, Literal(value.text, quoted=value.kind == "string"))
