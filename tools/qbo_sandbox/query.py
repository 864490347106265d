"""The QBO query language: tokenizer and parser (qbo_facts s.5); faults 4000 on bad syntax."""
from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, NoReturn

from .errors import query_parse_error

KEYWORDS = {"SELECT", "FROM", "WHERE", "AND", "OR", "NOT", "IN", "LIKE", "ORDERBY", "ORDER", "BY", "ASC",
            "DESC", "STARTPOSITION", "MAXRESULTS", "COUNT", "TRUE", "FALSE", "GROUP", "JOIN", "NULL", "IS"}
COMPARISONS = ("<=", ">=", "!=", "<>", "=", "<", ">")
PUNCTUATION = {"(": "LPAREN", ")": "RPAREN", ",": "COMMA", "*": "STAR"}


@dataclass(frozen=True)
class Token:
    """One lexical token; column is 1-based, like QBO's parser messages."""

    kind: str  # ID, KEYWORD, STRING, NUMBER, OP, LPAREN, RPAREN, COMMA, STAR, EOF
    image: str
    column: int
    value: Any = None


@dataclass(frozen=True)
class Condition:
    """`field op literal` or `field IN (literal, ...)`."""

    field: str
    op: str  # =, <, >, <=, >=, LIKE, IN
    values: tuple[Any, ...]


@dataclass
class Query:
    """A parsed SELECT."""

    entity: str
    count: bool = False
    conditions: list[Condition] = field(default_factory=list)
    order_by: list[tuple[str, bool]] = field(default_factory=list)  # (field, descending)
    start_position: int | None = None
    max_results: int | None = None


def _encountered(token: Token) -> str:
    # Mimic JavaCC's message so client code that logs Detail sees the familiar shape.
    if token.kind == "EOF":
        return f'Encountered "<EOF>" at line 1, column {token.column}.'
    if token.kind == "KEYWORD" or token.kind in ("OP", "LPAREN", "RPAREN", "COMMA", "STAR"):
        kind = f'"{token.image.lower()}"'
    else:
        kind = "<" + {"ID": "IDENTIFIER", "NUMBER": "INTEGER"}.get(token.kind, token.kind) + ">"
    return f'Encountered " {kind} "{token.image} "" at line 1, column {token.column}.'


def _read_string(text: str, start: int) -> tuple[str, int]:
    """Read a single-quoted literal at text[start]; return (value, index after the closing quote)."""
    chars: list[str] = []
    i = start + 1
    while i < len(text):
        ch = text[i]
        if ch == "\\":
            if i + 1 >= len(text):
                break
            # A backslash makes the next character literal: \' is a quote, \\ a backslash (qbo_facts s.5).
            chars.append(text[i + 1])
            i += 2
            continue
        if ch == "'":
            return "".join(chars), i + 1
        chars.append(ch)
        i += 1
    raise query_parse_error(_encountered(Token("EOF", "", len(text) + 1))
                            + f" Unterminated string literal starting at column {start + 1}.")


def tokenize(text: str) -> list[Token]:
    """Split query text into tokens; an unterminated string or stray character is a 4000."""
    tokens: list[Token] = []
    i = 0
    while i < len(text):
        ch = text[i]
        col = i + 1
        if ch.isspace():
            i += 1
        elif ch == "'":
            value, end = _read_string(text, i)
            tokens.append(Token("STRING", text[i:end], col, value))
            i = end
        elif ch in PUNCTUATION:
            tokens.append(Token(PUNCTUATION[ch], ch, col))
            i += 1
        elif ch.isdigit() or (ch == "-" and i + 1 < len(text) and text[i + 1].isdigit()):
            end = i + 1
            while end < len(text) and (text[end].isdigit() or text[end] == "."):
                end += 1
            image = text[i:end]
            try:
                tokens.append(Token("NUMBER", image, col, Decimal(image)))
            except ArithmeticError:
                raise query_parse_error(f'Encountered " <INTEGER> "{image} "" at line 1, column {col}.') from None
            i = end
        elif ch.isalpha() or ch == "_":
            end = i + 1
            while end < len(text) and (text[end].isalnum() or text[end] in "_."):
                end += 1
            image = text[i:end]
            kind = "KEYWORD" if image.upper() in KEYWORDS else "ID"
            tokens.append(Token(kind, image, col))
            i = end
        else:
            op = next((o for o in COMPARISONS if text.startswith(o, i)), None)
            if op is None:
                raise query_parse_error(f'Encountered " "{ch}" "{ch} "" at line 1, column {col}.')
            tokens.append(Token("OP", op, col))
            i += len(op)
    tokens.append(Token("EOF", "", len(text) + 1))
    return tokens


class _Parser:
    """Recursive descent over the token list."""

    def __init__(self, text: str) -> None:
        self.tokens = tokenize(text)
        self.pos = 0

    @property
    def current(self) -> Token:
        """The token under the cursor."""
        return self.tokens[self.pos]

    def fail(self) -> NoReturn:
        """Raise 4000 for the token under the cursor."""
        raise query_parse_error(_encountered(self.current))

    def is_keyword(self, *words: str) -> bool:
        """Is the current token one of these keywords (any case)?"""
        tok = self.current
        return tok.kind == "KEYWORD" and tok.image.upper() in words

    def keyword(self, *words: str) -> str:
        """Consume one of these keywords and return it upper-cased."""
        if not self.is_keyword(*words):
            self.fail()
        word = self.current.image.upper()
        self.pos += 1
        return word

    def expect(self, kind: str) -> Token:
        """Consume a token of this kind."""
        tok = self.current
        if tok.kind != kind:
            self.fail()
        self.pos += 1
        return tok

    def literal(self) -> Any:
        """A string, number, true or false."""
        tok = self.current
        if tok.kind in ("STRING", "NUMBER"):
            self.pos += 1
            return tok.value
        if self.is_keyword("TRUE", "FALSE"):
            self.pos += 1
            return tok.image.upper() == "TRUE"
        self.fail()

    def integer(self) -> int:
        """A whole number (STARTPOSITION, MAXRESULTS)."""
        tok = self.expect("NUMBER")
        if tok.value != tok.value.to_integral_value():
            raise query_parse_error(_encountered(tok))
        return int(tok.value)

    def parse(self) -> Query:
        """The whole SELECT statement."""
        self.keyword("SELECT")
        count = False
        if self.is_keyword("COUNT"):
            self.pos += 1
            self.expect("LPAREN")
            self.expect("STAR")
            self.expect("RPAREN")
            count = True
        else:
            self.expect("STAR")
            # python-quickbooks' Item.all() sends "SELECT *, Sku FROM Item": extra columns are accepted.
            while self.current.kind == "COMMA":
                self.pos += 1
                self.expect("ID")
        self.keyword("FROM")
        query = Query(entity=self.expect("ID").image, count=count)
        if self.is_keyword("WHERE"):
            self.pos += 1
            query.conditions.append(self.condition())
            while self.is_keyword("AND"):
                self.pos += 1
                query.conditions.append(self.condition())
        if self.is_keyword("ORDERBY", "ORDER"):
            # The docs say ORDERBY; python-quickbooks' .all() sends "ORDER BY"; QBO takes both.
            if self.keyword("ORDERBY", "ORDER") == "ORDER":
                self.keyword("BY")
            query.order_by.append(self.order_term())
            while self.current.kind == "COMMA":
                self.pos += 1
                query.order_by.append(self.order_term())
        while self.is_keyword("STARTPOSITION", "MAXRESULTS"):
            word = self.keyword("STARTPOSITION", "MAXRESULTS")
            if word == "STARTPOSITION" and query.start_position is None:
                query.start_position = self.integer()
            elif word == "MAXRESULTS" and query.max_results is None:
                query.max_results = self.integer()
            else:
                self.pos -= 1
                self.fail()
        if self.current.kind != "EOF":
            self.fail()
        return query

    def condition(self) -> Condition:
        """`field op literal`, `field IN (...)` or `field LIKE '...'`."""
        name = self.expect("ID").image
        if self.is_keyword("IN"):
            self.pos += 1
            self.expect("LPAREN")
            values = [self.literal()]
            while self.current.kind == "COMMA":
                self.pos += 1
                values.append(self.literal())
            self.expect("RPAREN")
            return Condition(name, "IN", tuple(values))
        if self.is_keyword("LIKE"):
            self.pos += 1
            tok = self.expect("STRING")
            return Condition(name, "LIKE", (tok.value,))
        op = self.current
        if op.kind != "OP" or op.image in ("!=", "<>"):
            self.fail()
        self.pos += 1
        return Condition(name, op.image, (self.literal(),))

    def order_term(self) -> tuple[str, bool]:
        """`field [ASC|DESC]`."""
        name = self.expect("ID").image
        descending = False
        if self.is_keyword("ASC", "DESC"):
            descending = self.keyword("ASC", "DESC") == "DESC"
        return name, descending


def parse_query(text: str) -> Query:
    """Parse one QBO query; raise QBOFault 4000 with a JavaCC-like Detail when it does not parse."""
    return _Parser(text).parse()
