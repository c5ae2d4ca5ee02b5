"""KQL (Kibana Query Language) -> Elasticsearch query DSL, the way Kibana's `@kbn/es-query` builds it,
for the constructs Elastic's detection rules use; plus an evaluator of the same AST over a document.

Why here: no maintained KQL library exists on PyPI (`kibana-ql` parses only and is unmaintained;
Elastic's own `kql` package lives inside elastic/detection-rules and is not published), and the
conformance tests must run Elastic's rules as Kibana would.

Supported: `and` / `or` / `not` (any case), parentheses, `field:value`, `field : value`,
`field:"quoted phrase"`, `field:*` (exists), wildcards `*` in unquoted values, backslash escapes
(`system\\:serviceaccount\\:*`), value lists `field:(a or b)`, `field:(* and not (x or y))`,
`field:(a or not *)`. Not supported (no rule uses them): range operators, nested `{}` queries,
field-less terms, field names with wildcards. Those raise `KqlError`.

Translation, as Kibana does it: unquoted value -> `match`; quoted -> `match_phrase`; a value with a
wildcard -> `query_string` on that one field; `*` -> `exists`; `and` -> `bool.filter`; `or` ->
`bool.should` with `minimum_should_match: 1`; `not` -> `bool.must_not`.
"""
from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass

WILDCARD = "\x00*"          # a wildcard `*` in a value, as opposed to an escaped, literal one


class KqlError(ValueError):
    """The query uses KQL this module does not handle, or is malformed; the message says where."""


@dataclass(frozen=True)
class Is:
    field: str
    value: str              # WILDCARD marks wildcards; other characters are literal
    quoted: bool

    @property
    def exists(self) -> bool:
        return not self.quoted and self.value == WILDCARD

    @property
    def has_wildcard(self) -> bool:
        return not self.quoted and WILDCARD in self.value


@dataclass(frozen=True)
class Bool:
    op: str                 # "and" | "or" | "not"
    items: tuple


_TOKEN = re.compile(r'\s*(?:(?P<open>\()|(?P<close>\))|(?P<colon>:)|"(?P<quoted>(?:[^"\\]|\\.)*)"|'
                    r'(?P<word>(?:[^\s():"\\<>{}]|\\.)+))', re.S)
_SPECIAL = "<>{}"


def _tokens(text: str):
    pos = 0
    out = []
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            ch = text[pos:].lstrip()[:1]
            raise KqlError(f"unsupported KQL at offset {pos}: {ch!r}" + (" (range / nested queries are not supported)"
                                                                       if ch in _SPECIAL else ""))
        pos = m.end()
        kind = m.lastgroup
        out.append((kind, m.group(kind)))
    return out


def _word_value(raw: str) -> str:
    """An unquoted value: `\\x` is a literal x, `*` a wildcard."""
    out = []
    i = 0
    while i < len(raw):
        ch = raw[i]
        if ch == "\\" and i + 1 < len(raw):
            out.append(raw[i + 1])
            i += 2
            continue
        out.append(WILDCARD if ch == "*" else ch)
        i += 1
    return "".join(out)


def _quoted_value(raw: str) -> str:
    return re.sub(r"\\(.)", r"\1", raw)


class _Parser:
    def __init__(self, text: str):
        self.toks = _tokens(text)
        self.i = 0
        self.text = text

    def peek(self, kind=None, word=None):
        if self.i >= len(self.toks):
            return None
        tok = self.toks[self.i]
        if kind and tok[0] != kind:
            return None
        if word and (tok[0] != "word" or tok[1].lower() != word):
            return None
        return tok

    def take(self, kind=None, word=None):
        tok = self.peek(kind, word)
        if tok is None:
            got = self.toks[self.i] if self.i < len(self.toks) else ("end", "")
            raise KqlError(f"expected {word or kind} in KQL, got {got[1]!r} ({self.text[:60]!r}...)")
        self.i += 1
        return tok

    # query level
    def query(self):
        node = self.or_expr(self.and_expr)
        if self.i != len(self.toks):
            raise KqlError(f"unexpected {self.toks[self.i][1]!r} in KQL")
        return node

    def or_expr(self, sub):
        items = [sub()]
        while self.peek(word="or"):
            self.take()
            items.append(sub())
        return items[0] if len(items) == 1 else Bool("or", tuple(items))

    def and_expr(self):
        items = [self.not_expr()]
        while self.peek(word="and"):
            self.take()
            items.append(self.not_expr())
        return items[0] if len(items) == 1 else Bool("and", tuple(items))

    def not_expr(self):
        if self.peek(word="not"):
            self.take()
            return Bool("not", (self.not_expr(),))
        if self.peek("open"):
            self.take()
            node = self.or_expr(self.and_expr)
            self.take("close")
            return node
        tok = self.take()
        if tok[0] not in ("word", "quoted"):
            raise KqlError(f"expected a field name in KQL, got {tok[1]!r}")
        if not self.peek("colon"):
            raise KqlError(f"field-less term {tok[1]!r} is not supported")
        self.take("colon")
        # A field name may be quoted (`"@timestamp": *`, as in Elastic's Falco dashboard).
        field = _quoted_value(tok[1]) if tok[0] == "quoted" else _word_value(tok[1]).replace(WILDCARD, "*")
        return self.value_expr(field)

    # value level (inside field:...)
    def value_expr(self, field):
        if self.peek("open"):
            self.take()
            node = self.or_expr(lambda: self.value_and(field))
            self.take("close")
            return node
        return self.value(field)

    def value_and(self, field):
        items = [self.value_not(field)]
        while self.peek(word="and"):
            self.take()
            items.append(self.value_not(field))
        return items[0] if len(items) == 1 else Bool("and", tuple(items))

    def value_not(self, field):
        if self.peek(word="not"):
            self.take()
            return Bool("not", (self.value_not(field),))
        return self.value_expr(field)

    def value(self, field):
        tok = self.take()
        if tok[0] == "quoted":
            return Is(field, _quoted_value(tok[1]), True)
        if tok[0] == "word":
            return Is(field, _word_value(tok[1]), False)
        raise KqlError(f"expected a value for {field}, got {tok[1]!r}")


def parse(text: str):
    """KQL text -> AST (`Is` / `Bool`)."""
    return _Parser(text).query()


_QS_SPECIAL = set('+-=&|><!(){}[]^"~*?:\\/ ')


def _query_string(value: str) -> str:
    """Kibana's wildcard.toQueryStringQuery: escape query_string syntax, keep the wildcards."""
    return "".join("*" if part == WILDCARD else ("\\" + part if part in _QS_SPECIAL else part)
                   for part in re.findall(r"\x00\*|.", value, re.S))


def to_dsl(node) -> dict:
    """AST -> query DSL, as Kibana's KQL -> DSL translation builds it."""
    if isinstance(node, Is):
        if node.exists:
            return {"exists": {"field": node.field}}
        if node.has_wildcard:
            return {"query_string": {"fields": [node.field], "query": _query_string(node.value)}}
        kind = "match_phrase" if node.quoted else "match"
        return {kind: {node.field: node.value}}
    if node.op == "and":
        return {"bool": {"filter": [to_dsl(i) for i in node.items]}}
    if node.op == "or":
        return {"bool": {"should": [to_dsl(i) for i in node.items], "minimum_should_match": 1}}
    return {"bool": {"must_not": [to_dsl(node.items[0])]}}


def kql_to_dsl(text: str) -> dict:
    return to_dsl(parse(text))


# ---------------------------------------------------------------------------------------------
# Evaluation over a document (keyword semantics: exact, case-sensitive; wildcard as glob), the
# semantics of Elastic's own KQL evaluator (detection-rules' `kql` package) on keyword fields.

def values_at(doc: dict, field: str) -> list:
    """Every value of dotted `field` in `doc`, through lists and dotted keys (`a.b` stored as `{"a.b": x}`)."""
    out: list = []

    def walk(node, rest: str):
        if isinstance(node, list):
            for item in node:
                walk(item, rest)
            return
        if rest == "":
            if node is not None:
                out.append(node)
            return
        if not isinstance(node, dict):
            return
        parts = rest.split(".")
        for n in range(1, len(parts) + 1):
            key = ".".join(parts[:n])
            if key in node:
                walk(node[key], ".".join(parts[n:]))
    walk(doc, field)
    return out


def _text(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


def _matches(node: Is, value) -> bool:
    text = _text(value)
    if node.has_wildcard:
        pattern = "".join("*" if p == WILDCARD else ("[" + p + "]" if p in "[]?*" else p)
                          for p in re.findall(r"\x00\*|.", node.value, re.S))
        return fnmatch.fnmatchcase(text, pattern)
    return text == node.value


def evaluate(node, doc: dict) -> bool:
    if isinstance(node, Is):
        vals = values_at(doc, node.field)
        if node.exists:
            return bool(vals)
        return any(_matches(node, v) for v in vals)
    if node.op == "and":
        return all(evaluate(i, doc) for i in node.items)
    if node.op == "or":
        return any(evaluate(i, doc) for i in node.items)
    return not evaluate(node.items[0], doc)
