"""Hunt catalogue: declarative hunts (``mappings/hunts/<id>.yaml``) compiled once, tagging ECS documents.

A hunt file holds the hunt's id (its file name), title, hypothesis, source dataset, severity, risk
score, MITRE tactic/technique, a match expression over the ECS document, the analyst's fields, the
ranking fields of ``kubehunt report`` and raw example events (``examples: {match, no_match}``).

Match expressions are a small, safe subset of Python expression syntax, parsed with ``ast`` and
compiled into nested closures (no ``eval``): dotted field paths (``kubernetes.audit.verb``),
``x['key.with/dots']``, constants, tuples/lists, ``== != < <= > >= in`` / ``not in``, ``and or not``,
``any(EXPR for v in PATH if COND)`` / ``all(...)`` and a few registered functions (``FUNCTIONS``).
A missing field is ``None``; ``None`` never equals, contains or orders against anything, and
``x == True`` means "is the JSON boolean true" (``1 == True`` is not true here, as in jq).

Why not JMESPath: the tagger runs on every event, and 12 JMESPath evaluations cost ~7x as much as
compiled getters (DESIGN.md). To keep the hot path cheap the catalogue also indexes hunts by
dataset and, for audit hunts whose expression is a conjunction with
``kubernetes.audit.objectRef.resource == 'x'`` / ``in (...)``, by resource; an event evaluates only
the hunts that could match it.

Tagging (``Catalogue.tag``) adds ``kubehunt.hunts`` (matching ids), ``threat.*`` and
``event.risk_score`` (max over matching hunts). A hunt that raises on an event is treated as no
match for that event and recorded in ``kubehunt.hunt_errors``: the event is never lost.
"""
from __future__ import annotations

import ast
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import yaml

import mappings

SOURCES = ("kubernetes.audit_logs", "falco.alerts")
# Which raw source (transforms.records) feeds each hunt source, for running examples.
RAW_SOURCE = {"kubernetes.audit_logs": "audit", "falco.alerts": "falco"}
SEVERITIES = ("low", "medium", "high", "critical")
INDEX_FIELD = ("kubernetes", "audit", "objectRef", "resource")
VERB_FIELD = ("kubernetes", "audit", "verb")
# Fields `Catalogue.tag` writes (typed in mappings/ecs/ecs-fields.yaml, like the normaliser's own).
TAGGED_FIELDS = ("kubehunt.hunts", "kubehunt.hunt_errors", "event.risk_score", "threat.framework",
                 "threat.tactic.id", "threat.tactic.name", "threat.technique.id", "threat.technique.name")
_MEMO_LIMIT = 4096  # distinct (dataset, resource, verb) candidate lists kept per worker
_HUNT_ID = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")
_TACTIC = re.compile(r"^TA\d{4}$")
_TECHNIQUE = re.compile(r"^T\d{4}(\.\d{3})?$")
_FIELD = re.compile(r"^@?[A-Za-z_][\w.@-]*$")


class HuntError(ValueError):
    """A hunt file that cannot be loaded; the message starts with file[:line] and says why."""


@dataclass(frozen=True)
class HuntSettings:
    """User-tunable hunt configuration: plain data, picklable, passed to workers.

    Hunts reference the lists by name: ``setting('known_memfd_users')``.
    """
    hunts_dir: str | None = None
    secret_reader_exclusions: tuple[str, ...] = ("cert-manager", "vault", "external-secrets")
    known_memfd_users: tuple[str, ...] = ()
    known_debugger_procs: tuple[str, ...] = ("gdb", "lldb", "strace", "ltrace")


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


def _unrolled_getter(keys: tuple[str, ...]) -> Fn:
    """`doc.a.b.c` as straight-line code (no loop): the tagger runs these on every event."""
    body = ["def get(doc, var):", f"    o = doc.get({keys[0]!r})"]
    for key in keys[1:]:
        body += ["    if type(o) is not dict:", "        return None", f"    o = o.get({key!r})"]
    body.append("    return o")
    namespace: dict = {}
    exec(compile("\n".join(body), f"<hunt path {'.'.join(keys)}>", "exec"), namespace)  # noqa: S102 - keys are repr()-quoted
    return namespace["get"]


class _Compiler:
    def __init__(self, where: str, settings: HuntSettings):
        self.where = where
        self.settings = settings
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
            return _unrolled_getter(keys)

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
        value = getattr(self.settings, str(name), None)
        if name == "hunts_dir" or not isinstance(value, tuple):
            names = [f for f in HuntSettings.__dataclass_fields__ if f != "hunts_dir"]
            self.fail(node, f"unknown setting {name!r} (known: {', '.join(names)})")
        return value

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


def compile_expression(text: str, where: str, settings: HuntSettings) -> tuple[Callable[[dict], bool], frozenset | None]:
    """Compile a match expression into (predicate(doc) -> bool, required index keys or None)."""
    try:
        tree = ast.parse(" ".join(text.split()), mode="eval")
    except SyntaxError as err:
        raise HuntError(f"{where}: match: syntax error at column {err.offset}: {err.msg}") from None
    compiler = _Compiler(where, settings)
    fn = compiler.compile(tree.body)
    return (lambda doc: bool(fn(doc, None))), _index_keys(tree.body, compiler)


# ---------------------------------------------------------------------------------------------
# Hunt model


@dataclass(frozen=True)
class Mitre:
    tactic_id: str
    tactic_name: str
    technique_id: str
    technique_name: str


@dataclass(frozen=True)
class Hunt:
    id: str
    file: str
    title: str
    hypothesis: str
    source: str
    severity: str
    risk_score: float
    mitre: Mitre
    match: str
    fields: tuple[tuple[str, str], ...]          # (label, ECS field) the analyst sees, in order
    ranking: tuple[str, ...]                      # ECS fields `kubehunt report` aggregates on
    examples: tuple[tuple[str, tuple[dict, ...]], ...]  # (("match", (...)), ("no_match", (...)))
    notes: str = ""
    aliases: tuple[str, ...] = ()

    def example_events(self, kind: str) -> tuple[dict, ...]:
        return dict(self.examples)[kind]

    @property
    def raw_source(self) -> str:
        return RAW_SOURCE[self.source]


REQUIRED = ("title", "hypothesis", "source", "severity", "risk_score", "mitre", "match", "fields", "examples")
OPTIONAL = ("ranking", "notes", "aliases")


def _line_of(node: yaml.Node | None) -> int:
    return node.start_mark.line + 1 if node is not None else 1


def parse_hunt(path: Path) -> Hunt:
    """Load and validate one hunt file; every error names the file, the line and the reason."""
    text = path.read_text()
    try:
        node = yaml.compose(text)
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise HuntError(f"{path}: invalid YAML: {err}") from None
    if not isinstance(data, dict) or not isinstance(node, yaml.MappingNode):
        raise HuntError(f"{path}:1: a hunt file is a YAML mapping")
    lines = {k.value: _line_of(k) for k, _ in node.value}

    def fail(key: str, why: str):
        raise HuntError(f"{path}:{lines.get(key, 1)}: {key}: {why}")

    hunt_id = path.stem
    if not _HUNT_ID.match(hunt_id):
        raise HuntError(f"{path}: the file name (the hunt id) must be lowercase words joined by '-'")
    if "id" in data and data["id"] != hunt_id:
        fail("id", f"{data['id']!r} differs from the file name {hunt_id!r}; the file name is the id")
    for key in REQUIRED:
        if key not in data:
            raise HuntError(f"{path}:1: missing required key {key!r}")
    unknown = set(data) - set(REQUIRED) - set(OPTIONAL) - {"id"}
    if unknown:
        fail(sorted(unknown)[0], f"unknown key (allowed: {', '.join(REQUIRED + OPTIONAL)})")
    for key in ("title", "hypothesis", "match"):
        if not isinstance(data[key], str) or not data[key].strip():
            fail(key, "must be non-empty text")
    if data["source"] not in SOURCES:
        fail("source", f"{data['source']!r} is not one of {', '.join(SOURCES)}")
    if data["severity"] not in SEVERITIES:
        fail("severity", f"{data['severity']!r} is not one of {', '.join(SEVERITIES)}")
    risk = data["risk_score"]
    if isinstance(risk, bool) or not isinstance(risk, (int, float)) or not 0 <= risk <= 100:
        fail("risk_score", "must be a number from 0 to 100")
    mitre = data["mitre"]
    if not isinstance(mitre, dict) or set(mitre) != {"tactic", "technique"} \
            or not all(isinstance(mitre[k], dict) and set(mitre[k]) == {"id", "name"} for k in mitre):
        fail("mitre", "must be {tactic: {id, name}, technique: {id, name}}")
    if not _TACTIC.match(str(mitre["tactic"]["id"])):
        fail("mitre", f"tactic id {mitre['tactic']['id']!r} is not TA####")
    if not _TECHNIQUE.match(str(mitre["technique"]["id"])):
        fail("mitre", f"technique id {mitre['technique']['id']!r} is not T#### or T####.###")
    fields = data["fields"]
    if not isinstance(fields, dict) or not fields or not all(
            isinstance(k, str) and isinstance(v, str) and _FIELD.match(v) for k, v in fields.items()):
        fail("fields", "must map a label to an ECS field name (label: user.name)")
    ranking = data.get("ranking", [])
    if not isinstance(ranking, list) or not all(isinstance(r, str) and _FIELD.match(r) for r in ranking):
        fail("ranking", "must be a list of ECS field names")
    aliases = data.get("aliases", [])
    if not isinstance(aliases, list) or not all(isinstance(a, str) and _HUNT_ID.match(a) for a in aliases):
        fail("aliases", "must be a list of ids")
    examples = data["examples"]
    if not isinstance(examples, dict) or set(examples) != {"match", "no_match"}:
        fail("examples", "must have exactly `match` and `no_match` lists")
    for kind in ("match", "no_match"):
        events = examples[kind]
        if not isinstance(events, list) or not events or not all(isinstance(e, dict) for e in events):
            fail("examples", f"`{kind}` must be a non-empty list of raw {data['source']} events (objects)")
    return Hunt(
        id=hunt_id, file=str(path), title=data["title"].strip(), hypothesis=" ".join(data["hypothesis"].split()),
        source=data["source"], severity=data["severity"], risk_score=float(risk),
        mitre=Mitre(str(mitre["tactic"]["id"]), str(mitre["tactic"]["name"]),
                    str(mitre["technique"]["id"]), str(mitre["technique"]["name"])),
        match=" ".join(data["match"].split()), fields=tuple(fields.items()), ranking=tuple(ranking),
        examples=(("match", tuple(examples["match"])), ("no_match", tuple(examples["no_match"]))),
        notes=" ".join(str(data.get("notes", "")).split()), aliases=tuple(aliases),
    )


def hunt_files(settings: HuntSettings) -> list[Path]:
    folder = Path(settings.hunts_dir) if settings.hunts_dir else mappings.path("hunts")
    if not folder.is_dir():
        raise HuntError(f"{folder}: hunts folder not found")
    return sorted(folder.glob("*.yaml"))


def load_hunts(settings: HuntSettings | None = None) -> list[Hunt]:
    return [parse_hunt(p) for p in hunt_files(settings or HuntSettings())]


# ---------------------------------------------------------------------------------------------
# Catalogue: compiled hunts + the tagger


@dataclass(frozen=True)
class CompiledHunt:
    hunt: Hunt
    predicate: Callable[[dict], bool]
    index_keys: frozenset | None
    verb_keys: frozenset | None = None


@dataclass
class Catalogue:
    """Compiled hunts indexed for the per-event tagger (built once per worker)."""
    hunts: tuple[CompiledHunt, ...]

    def __post_init__(self):
        seen: dict[str, str] = {}
        for c in self.hunts:
            for name in (c.hunt.id, *c.hunt.aliases):
                if name in seen:
                    raise HuntError(f"{c.hunt.file}: id or alias {name!r} already used by {seen[name]}")
                seen[name] = c.hunt.file
        self._memo: dict[tuple, tuple] = {}

    @property
    def by_id(self) -> dict[str, Hunt]:
        out = {}
        for c in self.hunts:
            out[c.hunt.id] = c.hunt
            for alias in c.hunt.aliases:
                out[alias] = c.hunt
        return out

    def _select(self, dataset, resource, verb) -> tuple:
        return tuple(c for c in self.hunts if c.hunt.source == dataset
                     and (c.index_keys is None or resource in c.index_keys)
                     and (c.verb_keys is None or verb in c.verb_keys))

    def candidates(self, doc: dict) -> tuple:
        """The hunts that could match `doc`, from its dataset, resource and verb (memoised: most
        events are reads that no hunt on writes needs to look at)."""
        event = doc.get("event")
        dataset = event.get("dataset") if isinstance(event, dict) else None
        resource = verb = None
        audit = doc.get("kubernetes")
        audit = audit.get("audit") if isinstance(audit, dict) else None
        if isinstance(audit, dict):
            verb = audit.get("verb")
            ref = audit.get("objectRef")
            resource = ref.get("resource") if isinstance(ref, dict) else None
            if not isinstance(verb, str):
                verb = None
            if not isinstance(resource, str):
                resource = None
        key = (dataset, resource, verb)
        found = self._memo.get(key)
        if found is None:
            found = self._select(dataset, resource, verb)
            if len(self._memo) < _MEMO_LIMIT:
                self._memo[key] = found
        return found

    def tag(self, doc: dict) -> list[str]:
        """Tag `doc` in place with the hunts it matches; returns the matching hunt ids."""
        matched: list[CompiledHunt] = []
        errors: list[str] = []
        for compiled in self.candidates(doc):
            try:
                hit = compiled.predicate(doc)
            except Exception as err:  # noqa: BLE001 - one broken hunt must not lose the event
                errors.append(f"{compiled.hunt.id}: {type(err).__name__}: {err}"[:300])
                continue
            if hit:
                matched.append(compiled)
        if errors:
            doc.setdefault("kubehunt", {})["hunt_errors"] = errors
        if not matched:
            return []
        ids = [c.hunt.id for c in matched]
        doc.setdefault("kubehunt", {})["hunts"] = ids
        _add_threat(doc, [c.hunt for c in matched])
        return ids


def _merge(existing, new: list) -> list:
    out = list(existing) if isinstance(existing, list) else ([existing] if existing is not None else [])
    for value in new:
        if value not in out:
            out.append(value)
    return out


def _add_threat(doc: dict, hunts: list[Hunt]) -> None:
    event = doc.setdefault("event", {})
    risk = max(h.risk_score for h in hunts)
    current = event.get("risk_score")
    event["risk_score"] = risk if not isinstance(current, (int, float)) else max(current, risk)
    threat = doc.get("threat")
    if not isinstance(threat, dict):
        threat = doc["threat"] = {}
    threat["framework"] = "MITRE ATT&CK"
    tactic = threat.get("tactic") if isinstance(threat.get("tactic"), dict) else {}
    technique = threat.get("technique") if isinstance(threat.get("technique"), dict) else {}
    tactic["id"] = _merge(tactic.get("id"), [h.mitre.tactic_id for h in hunts])
    tactic["name"] = _merge(tactic.get("name"), [h.mitre.tactic_name for h in hunts])
    technique["id"] = _merge(technique.get("id"), [h.mitre.technique_id for h in hunts])
    technique["name"] = _merge(technique.get("name"), [h.mitre.technique_name for h in hunts])
    threat["tactic"], threat["technique"] = tactic, technique


def compile_hunt(hunt: Hunt, settings: HuntSettings) -> CompiledHunt:
    predicate, keys = compile_expression(hunt.match, hunt.file, settings)
    tree = ast.parse(" ".join(hunt.match.split()), mode="eval")
    verbs = _index_keys(tree.body, _Compiler(hunt.file, settings), VERB_FIELD)
    return CompiledHunt(hunt, predicate, keys, verbs)


def load_catalogue(settings: HuntSettings) -> Catalogue:
    """Load, validate and compile every hunt file (default: the shipped mappings/hunts)."""
    return Catalogue(tuple(compile_hunt(h, settings) for h in load_hunts(settings)))
