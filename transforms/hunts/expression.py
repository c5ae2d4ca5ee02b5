"""The hunt match-expression language: a small, safe subset of Python expression syntax.

An expression is parsed with ``ast`` (``mode="eval"``) and every node is checked against a short
allow-list, then compiled into nested closures ``f(doc, var)`` (``var`` is the current item of an
enclosing ``any()``/``all()``). Nothing is ever evaluated or executed from hunt text: no ``eval``,
no ``exec``, no attribute access on Python objects (a dotted name is a *document path*), and calls
only of the registered functions below, looked up by name in ``FUNCTIONS``.

Supported: dotted field paths (``kubernetes.audit.verb``), ``x['key.with/dots']``, constants,
tuples/lists, ``== != < <= > >= in`` / ``not in``, ``and or not``, ``any(EXPR for v in PATH if COND)``
/ ``all(...)`` (one level), ``matches(x, 'regex')``, ``setting('list_name')`` (a tunable list, see
``model.HuntSettings``) and ``FUNCTIONS``. A missing field is ``None``; ``None`` never equals,
contains or orders against anything, and ``x == True`` means "is the JSON boolean true" (``1 == True``
is not true here, as in jq).

Why not JMESPath: the tagger runs on every event, and 12 JMESPath evaluations cost ~7x as much as
compiled getters (DESIGN.md). ``index_keys`` extracts the values of a field (the audit resource, the
verb) that a conjunction requires, so the catalogue can skip hunts that cannot match an event.
"""
from __future__ import annotations

import ast
import re
from typing import Any, Callable, Mapping

from transforms.hunts.model import HuntError

INDEX_FIELD = ("kubernetes", "audit", "objectRef", "resource")
VERB_FIELD = ("kubernetes", "audit", "verb")


# ---------------------------------------------------------------------------------------------
# Registered functions usable in match expressions


def _startswith(value, prefix) -> bool:
    if not isinstance(value, str):
        return False
    return value.startswith(tuple(prefix) if isinstance(prefix, (list, tuple, frozenset)) else prefix)


def _endswith(value, suffix) -> bool:
    if not isinstance(value, str):
        return False
    return value.endswith(tuple(suffix) if isinstance(suffix, (list, tuple, frozenset)) else suffix)


def _contains(value, item) -> bool:
    """Substring of a string, or element of a list."""
    if isinstance(value, str):
        return isinstance(item, str) and item in value
    if isinstance(value, list):
        return item in value
    return False


def _is_service_account(user) -> bool:
    """``system:serviceaccount:NS:NAME`` (``system:serviceaccounts:...`` is a group, not an account)."""
    return isinstance(user, str) and user.startswith("system:serviceaccount:")


def _service_account_in(user, names) -> bool:
    """The account's namespace or name is one of ``names``, or its name starts with ``<name>-``.

    Precise on purpose: the playbook's ``test("cert-manager|vault|...")`` is a substring match over
    the whole user name, so ``system:serviceaccount:default:vaultwarden`` escapes the hunt there.
    """
    if not _is_service_account(user):
        return False
    rest = user[len("system:serviceaccount:"):]
    namespace, _, name = rest.partition(":")
    for entry in names:
        if namespace == entry or name == entry or name.startswith(entry + "-"):
            return True
    return False


def _length(value) -> int:
    return len(value) if isinstance(value, (str, list, dict)) else 0


def _lower(value):
    return value.lower() if isinstance(value, str) else None


def _exists(value) -> bool:
    return value is not None


FUNCTIONS: dict[str, Callable[..., Any]] = {
    "startswith": _startswith,
    "endswith": _endswith,
    "contains": _contains,
    "is_service_account": _is_service_account,
    "service_account_in": _service_account_in,
    "len": _length,
    "lower": _lower,
    "exists": _exists,
}
# `matches(value, 'regex')`, `setting('name')`, `any(...)`, `all(...)` are compiled specially.


# ---------------------------------------------------------------------------------------------
# Expression compiler: ast -> closures f(doc, var) where `var` is the current loop item of an
# enclosing any()/all() (one level; nesting is refused at load, it would need an environment).

Fn = Callable[[dict, Any], Any]


def _path_getter(keys: tuple[str, ...]) -> Fn:
    """`doc.a.b.c` as one closure per depth, without a loop: the tagger runs these on every event.

    Paths of 2 to 5 keys (all the shipped hunts use) get a straight-line closure; longer ones a loop.
    The keys are plain strings captured by the closure, never code.
    """
    d = dict
    if len(keys) == 2:
        k1, k2 = keys

        def get(doc, var):
            o = doc.get(k1)
            return o.get(k2) if type(o) is d else None
    elif len(keys) == 3:
        k1, k2, k3 = keys

        def get(doc, var):
            o = doc.get(k1)
            if type(o) is not d:
                return None
            o = o.get(k2)
            return o.get(k3) if type(o) is d else None
    elif len(keys) == 4:
        k1, k2, k3, k4 = keys

        def get(doc, var):
            o = doc.get(k1)
            if type(o) is not d:
                return None
            o = o.get(k2)
            if type(o) is not d:
                return None
            o = o.get(k3)
            return o.get(k4) if type(o) is d else None
    elif len(keys) == 5:
        k1, k2, k3, k4, k5 = keys

        def get(doc, var):
            o = doc.get(k1)
            if type(o) is not d:
                return None
            o = o.get(k2)
            if type(o) is not d:
                return None
            o = o.get(k3)
            if type(o) is not d:
                return None
            o = o.get(k4)
            return o.get(k5) if type(o) is d else None
    else:
        first, rest = keys[0], keys[1:]

        def get(doc, var):
            o = doc.get(first)
            for key in rest:
                if type(o) is not d:
                    return None
                o = o.get(key)
            return o
    return get


class _Compiler:
    def __init__(self, where: str, lists: Mapping[str, tuple]):
        self.where = where
        self.lists = lists
        self.loop_var: str | None = None

    def fail(self, node, why: str):
        col = f" (column {node.col_offset + 1})" if hasattr(node, "col_offset") else ""
        raise HuntError(f"{self.where}: match{col}: {why}")

    # -- paths -----------------------------------------------------------------------------------
    def path_of(self, node) -> tuple[str, ...] | None:
        """Dotted path of a Name/Attribute/Subscript-with-string chain, or None if not a path."""
        parts: list[str] = []
        while True:
            if isinstance(node, ast.Attribute):
                parts.append(node.attr)
                node = node.value
            elif isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Constant) \
                    and isinstance(node.slice.value, str):
                parts.append(node.slice.value)
                node = node.value
            elif isinstance(node, ast.Name):
                parts.append(node.id)
                return tuple(reversed(parts))
            else:
                return None

    def getter(self, path: tuple[str, ...]) -> Fn:
        if self.loop_var is not None and path[0] == self.loop_var:
            keys, from_var = path[1:], True
        else:
            keys, from_var = path, False
        if from_var and not keys:
            return lambda doc, var: var
        if len(keys) == 1:
            (k1,) = keys
            if from_var:
                return lambda doc, var: var.get(k1) if isinstance(var, dict) else None
            return lambda doc, var: doc.get(k1)

        if not from_var:
            return _path_getter(keys)

        def get(doc, var):
            obj = var
            for key in keys:
                if not isinstance(obj, dict):
                    return None
                obj = obj.get(key)
            return obj
        return get

    # -- nodes -----------------------------------------------------------------------------------
    def compile(self, node) -> Fn:
        path = self.path_of(node)
        if path is not None:
            if path[0] in FUNCTIONS or path[0] in ("setting", "matches", "any", "all"):
                self.fail(node, f"{path[0]!r} is a function; call it")
            return self.getter(path)
        if isinstance(node, ast.Constant):
            value = node.value
            if not isinstance(value, (str, int, float, bool, type(None))):
                self.fail(node, f"unsupported constant {value!r}")
            return lambda doc, var: value
        if isinstance(node, (ast.Tuple, ast.List)):
            const = self.constant(node)
            if const is not None:
                return lambda doc, var: const
            items = [self.compile(e) for e in node.elts]
            return lambda doc, var: [f(doc, var) for f in items]
        if isinstance(node, ast.BoolOp):
            return self.boolop(node)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
            inner = self.compile(node.operand)
            return lambda doc, var: not inner(doc, var)
        if isinstance(node, ast.Compare):
            return self.compare(node)
        if isinstance(node, ast.Call):
            return self.call(node)
        self.fail(node, f"unsupported syntax {type(node).__name__} ({ast.unparse(node)!r})")

    def constant(self, node):
        """A tuple/list of constants (or setting('x')) as a frozenset/tuple, else None."""
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "setting":
            return tuple(self.setting(node))
        if isinstance(node, (ast.Tuple, ast.List)) and all(isinstance(e, ast.Constant) for e in node.elts):
            return tuple(e.value for e in node.elts)
        return None

    def setting(self, node) -> tuple:
        if len(node.args) != 1 or not isinstance(node.args[0], ast.Constant) or node.keywords:
            self.fail(node, "setting() takes one quoted setting name")
        name = node.args[0].value
        value = self.lists.get(name) if isinstance(name, str) else None
        if value is None:
            self.fail(node, f"unknown setting {name!r} (known lists: {', '.join(sorted(self.lists)) or 'none'}; "
                            "a hunt file declares its lists under `lists:`)")
        return tuple(value)

    def boolop(self, node) -> Fn:
        parts = [self.compile(v) for v in node.values]
        if isinstance(node.op, ast.And):
            if len(parts) == 2:
                a, b = parts
                return lambda doc, var: bool(a(doc, var)) and bool(b(doc, var))
            if len(parts) == 3:
                a, b, c = parts
                return lambda doc, var: bool(a(doc, var)) and bool(b(doc, var)) and bool(c(doc, var))
            return lambda doc, var: all(p(doc, var) for p in parts)
        if len(parts) == 2:
            a, b = parts
            return lambda doc, var: bool(a(doc, var)) or bool(b(doc, var))
        return lambda doc, var: any(p(doc, var) for p in parts)

    def compare(self, node) -> Fn:
        if len(node.ops) != 1:
            self.fail(node, "chained comparisons are not supported; use `and`")
        op, right_node = node.ops[0], node.comparators[0]
        left = self.compile(node.left)
        if isinstance(op, (ast.In, ast.NotIn)):
            const = self.constant(right_node)
            if const is not None:
                members = frozenset(c for c in const if not isinstance(c, bool))
                bools = tuple(c for c in const if isinstance(c, bool))

                def is_in(doc, var):
                    v = left(doc, var)
                    if isinstance(v, bool):
                        return any(v is b for b in bools)
                    return isinstance(v, (str, int, float)) and v in members
            else:
                right = self.compile(right_node)

                def is_in(doc, var):
                    v, container = left(doc, var), right(doc, var)
                    if v is None:
                        return False
                    if isinstance(container, str):
                        return isinstance(v, str) and v in container
                    if isinstance(container, list):
                        return v in container
                    return False
            if isinstance(op, ast.In):
                return is_in
            return lambda doc, var: not is_in(doc, var)
        if isinstance(right_node, ast.Constant) and isinstance(right_node.value, bool):
            target = right_node.value
            if isinstance(op, ast.Eq):
                return lambda doc, var: left(doc, var) is target
            if isinstance(op, ast.NotEq):
                return lambda doc, var: left(doc, var) is not target
            self.fail(node, "booleans compare only with == / !=")
        right = self.compile(right_node)
        if isinstance(op, ast.Eq):
            if isinstance(right_node, ast.Constant) and isinstance(right_node.value, str):
                value = right_node.value
                return lambda doc, var: left(doc, var) == value
            return lambda doc, var: _eq(left(doc, var), right(doc, var))
        if isinstance(op, ast.NotEq):
            return lambda doc, var: not _eq(left(doc, var), right(doc, var))
        order = {ast.Lt: lambda a, b: a < b, ast.LtE: lambda a, b: a <= b,
                 ast.Gt: lambda a, b: a > b, ast.GtE: lambda a, b: a >= b}.get(type(op))
        if order is None:
            self.fail(node, f"unsupported comparison {type(op).__name__}")

        def ordered(doc, var):
            a, b = left(doc, var), right(doc, var)
            if isinstance(a, bool) or isinstance(b, bool):
                return False
            if isinstance(a, (int, float)) and isinstance(b, (int, float)):
                return order(a, b)
            if isinstance(a, str) and isinstance(b, str):
                return order(a, b)
            return False
        return ordered

    def call(self, node) -> Fn:
        if not isinstance(node.func, ast.Name) or node.keywords:
            self.fail(node, "only plain calls of registered functions are supported")
        name = node.func.id
        if name in ("any", "all"):
            return self.quantifier(node, name)
        if name == "setting":
            value = tuple(self.setting(node))
            return lambda doc, var: value
        if name == "matches":
            if len(node.args) != 2 or not isinstance(node.args[1], ast.Constant) \
                    or not isinstance(node.args[1].value, str):
                self.fail(node, "matches(value, 'regex') takes a quoted regular expression")
            try:
                pattern = re.compile(node.args[1].value)
            except re.error as err:
                self.fail(node, f"bad regular expression: {err}")
            arg = self.compile(node.args[0])
            search = pattern.search
            return lambda doc, var: (lambda v: isinstance(v, str) and search(v) is not None)(arg(doc, var))
        fn = FUNCTIONS.get(name)
        if fn is None:
            self.fail(node, f"unknown function {name!r} (known: any, all, matches, setting, "
                            f"{', '.join(sorted(FUNCTIONS))})")
        args = [self.compile(a) for a in node.args]
        if len(args) == 1:
            (a,) = args
            return lambda doc, var: fn(a(doc, var))
        if len(args) == 2:
            a, b = args
            return lambda doc, var: fn(a(doc, var), b(doc, var))
        return lambda doc, var: fn(*(a(doc, var) for a in args))

    def quantifier(self, node, name: str) -> Fn:
        if len(node.args) != 1 or not isinstance(node.args[0], ast.GeneratorExp):
            self.fail(node, f"{name}() takes a generator: {name}(EXPR for v in PATH)")
        gen = node.args[0]
        if len(gen.generators) != 1 or gen.generators[0].is_async:
            self.fail(node, f"{name}() takes exactly one `for`")
        comp = gen.generators[0]
        if not isinstance(comp.target, ast.Name):
            self.fail(node, "the loop variable must be a plain name")
        if self.loop_var is not None:
            self.fail(node, "nested any()/all() are not supported")
        iterable = self.compile(comp.iter)
        self.loop_var = comp.target.id
        try:
            element = self.compile(gen.elt)
            conditions = [self.compile(c) for c in comp.ifs]
        finally:
            self.loop_var = None

        def items(doc, var):
            seq = iterable(doc, var)
            if not isinstance(seq, list):
                return ()
            if conditions:
                return [item for item in seq if all(c(doc, item) for c in conditions)]
            return seq
        if name == "any":
            return lambda doc, var: any(element(doc, item) for item in items(doc, var))
        return lambda doc, var: all(element(doc, item) for item in items(doc, var))


def _eq(a, b) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    return a is not None and a == b


def _index_keys(node, compiler: _Compiler, index_field: tuple[str, ...] = INDEX_FIELD) -> frozenset | None:
    """Values of `index_field` (default kubernetes.audit.objectRef.resource) the expression
    requires, or None (any)."""
    if isinstance(node, ast.BoolOp) and isinstance(node.op, ast.And):
        for value in node.values:
            keys = _index_keys(value, compiler, index_field)
            if keys is not None:
                return keys
        return None
    if isinstance(node, ast.BoolOp) and isinstance(node.op, ast.Or):
        union: set = set()
        for value in node.values:
            keys = _index_keys(value, compiler, index_field)
            if keys is None:
                return None
            union |= keys
        return frozenset(union)
    if isinstance(node, ast.Compare) and len(node.ops) == 1 and compiler.path_of(node.left) == index_field:
        op, right = node.ops[0], node.comparators[0]
        if isinstance(op, ast.Eq) and isinstance(right, ast.Constant) and isinstance(right.value, str):
            return frozenset([right.value])
        if isinstance(op, ast.In):
            const = compiler.constant(right)
            if const is not None and all(isinstance(c, str) for c in const):
                return frozenset(const)
    return None


def parse_expression(text: str, where: str) -> ast.expr:
    try:
        return ast.parse(" ".join(text.split()), mode="eval").body
    except SyntaxError as err:
        raise HuntError(f"{where}: match: syntax error at column {err.offset}: {err.msg}") from None


def index_keys(tree: ast.expr, field: tuple[str, ...], where: str = "") -> frozenset | None:
    """Values of `field` a parsed expression requires (for the catalogue's candidate index), or None."""
    return _index_keys(tree, _Compiler(where, {}), field)


def compile_expression(text: str, where: str, lists) -> tuple[Callable[[dict], bool], frozenset | None]:
    """Compile a match expression into (predicate(doc) -> bool, required resource keys or None).

    `lists` maps the names `setting('name')` may use to their values; a `HuntSettings` is accepted
    too (its overrides over the lists the hunt files declare).
    """
    if not isinstance(lists, Mapping):
        from transforms.hunts.catalogue import resolved_lists
        lists = resolved_lists(lists)
    tree = parse_expression(text, where)
    compiler = _Compiler(where, lists)
    fn = compiler.compile(tree)
    return (lambda doc: bool(fn(doc, None))), _index_keys(tree, compiler)
