"""A seeded generator of hostile input for tests/test_hostile.py, mixed with good lines.

Every generated line carries its expectation: ``Case.good`` (it must be indexed exactly once, found by
its marker) or the words a dead letter's reason must hold (the field or the limit). Some hostile
values are legitimately storable (a number where a name is expected): those cases are ``either`` and
must end as exactly one document or exactly one dead letter whose reason names the field.
"""
from __future__ import annotations

import bz2
import gzip
import random
import re
from dataclasses import dataclass, field
from pathlib import Path

import orjson
import yaml
import zstandard

from transforms.parse import MAX_DEPTH

ROOT = Path(__file__).resolve().parent.parent
TIME = "2026-03-04T05:06:07.123456Z"
MAX_LINE_BYTES = 64 * 1024   # the suite runs with --max-line-bytes this size

GOOD, BAD, EITHER = "good", "bad", "either"


@dataclass
class Case:
    source: str
    line: bytes
    kind: str                 # GOOD, BAD or EITHER
    words: tuple = ()         # a dead letter's reason must contain one of these
    what: str = ""            # a description, for failure messages
    marker: str = ""          # the auditID / uuid the document carries (GOOD / EITHER)
    file: str = ""            # set when written
    line_no: int = 0


@dataclass
class Corpus:
    cases: list = field(default_factory=list)
    # whole files with a known outcome: (path, source, good markers, dead-letter words or None)
    files: list = field(default_factory=list)


def audit_event(marker: str, **extra) -> dict:
    return {"kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "Metadata", "auditID": marker,
            "stage": "ResponseComplete", "requestURI": "/api/v1/namespaces/ns/pods", "verb": "list",
            "user": {"username": "alice", "groups": ["dev"]}, "sourceIPs": ["10.0.0.1"],
            "userAgent": "kubectl", "objectRef": {"resource": "pods", "namespace": "ns", "apiVersion": "v1"},
            "responseStatus": {"code": 200}, "requestReceivedTimestamp": TIME, "stageTimestamp": TIME,
            **extra}


def falco_alert(marker: str, **extra) -> dict:
    return {"uuid": marker, "output": "shell in container", "priority": "Warning", "rule": "Terminal shell",
            "time": TIME, "source": "syscall", "hostname": "node-1", "tags": ["shell"],
            "output_fields": {"proc.name": "bash", "proc.pid": 42, "container.id": "abc", "k8s.ns.name": "ns",
                              "k8s.pod.name": "web-1", "evt.type": "execve"}, **extra}


def nested(depth: int, leaf=1) -> dict | int:
    value = leaf
    for _ in range(depth):
        value = {"a": value}
    return value


def source_fields(dataset: str) -> list[str]:
    """The source paths of the ECS mapping (mappings/ecs/<dataset>.yaml), `of:x` as output_fields.x."""
    spec = yaml.safe_load((ROOT / "mappings" / "ecs" / f"{dataset}.yaml").read_text())
    out = []
    for expr in spec["fields"].values():
        for part in str(expr).split("|")[0].split("??"):
            part = part.strip()
            if not part or part.startswith(("=", "'", '"')):
                continue
            out.append(part)
    return sorted(set(out))


def _set(record: dict, path: str, value) -> dict:
    """Put `value` at `path` (`output_fields.proc.name` is the key `proc.name` of output_fields)."""
    if path.startswith("of:"):
        record["output_fields"][path[3:]] = value
        return record
    keys = path.split(".")
    node = record
    for key in keys[:-1]:
        if not isinstance(node.get(key), dict):
            node[key] = {}
        node = node[key]
    node[keys[-1]] = value
    return record


WRONG_VALUES = [
    ("an object", {"x": {"y": 1}}), ("a list of objects", [{"x": 1}, {"y": 2}]), ("a number", 12345),
    ("a negative float", -1.5e300), ("a boolean", True), ("an empty list", []), ("an empty string", ""),
    ("a long string", "z" * 5000), ("a list of mixed types", [1, "a", None, {"b": 2}]),
    ("a NUL string", "a\u0000b"), ("a huge integer", "@@HUGE@@"),
]


def _long_fields(dataset: str) -> tuple:
    spec = yaml.safe_load((ROOT / "mappings" / "ecs" / f"{dataset}.yaml").read_text())
    return tuple(str(e).split("|")[0].strip() for e in spec["fields"].values()
                 if "| long" in str(e) or "|long" in str(e))


_LONG_FIELDS = {"audit": _long_fields("kubernetes.audit_logs"), "falco": _long_fields("falco.alerts")}


class Gen:
    def __init__(self, seed: int):
        self.rng = random.Random(seed)
        self.corpus = Corpus()
        self.n = 0

    def marker(self) -> str:
        self.n += 1
        return f"case-{self.n:06d}"

    def add(self, source, line, kind, words=(), what="", marker=""):
        self.corpus.cases.append(Case(source, line, kind, tuple(words), what, marker))

    def good(self, source: str) -> None:
        m = self.marker()
        rec = audit_event(m) if source == "audit" else falco_alert(m)
        if self.rng.random() < 0.3:   # some variety in good lines: unicode, escapes, odd numbers
            extra = self.rng.choice(["ünïcødé ✓", "\u2028", "tab\tand\\slash", 0, -0.0, 1e-300, 2 ** 63])
            if source == "audit":
                rec["requestObject"] = {"k": extra}
            else:
                rec["output_fields"]["x.extra"] = extra
        self.add(source, orjson.dumps(rec), GOOD, what="good line", marker=m)

    # --- the hostile families -------------------------------------------------------------------

    def depth(self) -> None:
        # The Event object is level 1; requestObject holds the rest. Exactly MAX_DEPTH is accepted.
        for total in (MAX_DEPTH - 1, MAX_DEPTH):
            m = self.marker()
            self.add("audit", orjson.dumps(audit_event(m, requestObject=nested(total - 1))), GOOD,
                     what=f"audit nested {total} deep", marker=m)
        for total in (MAX_DEPTH + 1, MAX_DEPTH + 2, MAX_DEPTH + self.rng.randint(3, 600), 1024):
            m = self.marker()
            body = b'{"a":' * (total - 1) + b"1" + b"}" * (total - 1)
            line = orjson.dumps(audit_event(m, requestObject="@@")).replace(b'"@@"', body)
            self.add("audit", line, BAD, ("MAX_DEPTH", "requestObject.a.a"), f"audit nested {total} deep", m)
        # Falco: alert (1) + output_fields (2) + the value.
        for total, kind in ((MAX_DEPTH, GOOD), (MAX_DEPTH + 1, BAD), (MAX_DEPTH + 50, BAD)):
            m = self.marker()
            alert = falco_alert(m)
            alert["output_fields"]["proc.name"] = "@@"
            body = b'{"a":' * (total - 2) + b"1" + b"}" * (total - 2)
            line = orjson.dumps(alert).replace(b'"@@"', body)
            self.add("falco", line, kind, ("MAX_DEPTH", "output_fields.proc.name"), f"falco nested {total} deep", m)
        # Deep arrays.
        m = self.marker()
        line = orjson.dumps(audit_event(m, responseObject="@@")).replace(
            b'"@@"', b"[" * (MAX_DEPTH + 3) + b"]" * (MAX_DEPTH + 3))
        self.add("audit", line, BAD, ("MAX_DEPTH", "responseObject[0][0]"), "deep array", m)

    def sizes(self) -> None:
        m = self.marker()
        pad = "p" * (MAX_LINE_BYTES - 2000)
        line = orjson.dumps(audit_event(m, requestObject={"pad": pad}))
        assert len(line) < MAX_LINE_BYTES
        self.add("audit", line, GOOD, what="a line just under the limit", marker=m)
        m = self.marker()
        line = orjson.dumps(audit_event(m, requestObject={"pad": "q" * (MAX_LINE_BYTES + 10)}))
        self.add("audit", line, BAD, ("max_line_bytes",), "a line over the limit", m)
        m = self.marker()
        line = orjson.dumps(falco_alert(m, output="o" * (MAX_LINE_BYTES * 3)))
        self.add("falco", line, BAD, ("max_line_bytes",), "a falco line three times the limit", m)
        m = self.marker()
        many = {f"k{i}": i for i in range(3000)}   # many keys in a flattened body: storable
        self.add("audit", orjson.dumps(audit_event(m, requestObject=many)), GOOD, what="3000 keys", marker=m)

    def encodings(self) -> None:
        for raw, what in ((b"\xff", "an invalid byte"), (b"\xed\xa0\x80", "an encoded surrogate"),
                          (b"\xc3", "a cut sequence"), (b"\xf8\x88\x80\x80\x80", "a 5-byte sequence")):
            for source in ("audit", "falco"):
                m = self.marker()
                rec = audit_event(m) if source == "audit" else falco_alert(m)
                line = orjson.dumps(rec).replace(b'"alice"' if source == "audit" else b'"bash"', b'"x' + raw + b'"')
                self.add(source, line, BAD, ("invalid UTF-8 at byte",), f"{source}: {what}", m)
        m = self.marker()
        line = orjson.dumps(audit_event(m)).replace(b'"alice"', b'"al\x00ice"')
        self.add("audit", line, BAD, ("control character",), "a raw NUL byte", m)
        m = self.marker()
        self.add("audit", orjson.dumps(audit_event(m, requestObject={"v": "a\u0000b"})), GOOD,
                 what="an escaped NUL in a value", marker=m)
        m = self.marker()
        self.add("audit", orjson.dumps(audit_event(m, requestObject={"a\u0000b": 1})), BAD,
                 ("requestObject", "NUL"), "an escaped NUL in a flattened key", m)
        m = self.marker()
        line = orjson.dumps(audit_event(m)).replace(b'"alice"', b'"\\ud800"')
        self.add("audit", line, BAD, ("surrogate",), "a lone surrogate escape", m)
        self.add("audit", b"\x00\x00\x00", BAD, ("not valid JSON",), "NUL bytes only")
        for source in ("audit", "falco"):
            m = self.marker()
            rec = audit_event(m) if source == "audit" else falco_alert(m)
            self.add(source, b"\xef\xbb\xbf" + orjson.dumps(rec), GOOD, what="a UTF-8 byte-order mark", marker=m)

    def numbers(self) -> None:
        for literal, kind, words in ((b"1e400", BAD, ("infinity",)), (b"NaN", BAD, ("not valid JSON",)),
                                     (b"Infinity", BAD, ("not valid JSON",)), (b"-Infinity", BAD, ("not valid JSON",)),
                                     (b"0123", BAD, ("not valid JSON",)), (b"+1", BAD, ("not valid JSON",)),
                                     (b"0x1F", BAD, ("not valid JSON",)), (b"1.", BAD, ("not valid JSON",)),
                                     (b"-0", GOOD, ()), (b"1e-400", GOOD, ()), (b"1.7976931348623157e308", GOOD, ()),
                                     (b"123456789012345678901234567890", GOOD, ()),
                                     (b"-9223372036854775809", GOOD, ()), (b"18446744073709551615", GOOD, ())):
            m = self.marker()
            line = orjson.dumps(audit_event(m, requestObject={"n": "@@"})).replace(b'"@@"', literal)
            self.add("audit", line, kind, words, f"number {literal.decode()} in a body", m)
        m = self.marker()
        line = orjson.dumps(audit_event(m, responseStatus={"code": "@@"})).replace(b'"@@"', b"99999999999999999999999")
        self.add("audit", line, EITHER, ("responseStatus", "code"), "a huge status code", m)

    def keys(self) -> None:
        # Duplicate keys: the last one wins (as in every mainstream JSON parser).
        m = self.marker()
        line = orjson.dumps(audit_event("dup-first")).replace(b'"auditID":"dup-first"',
                                                             b'"auditID":"dup-first","auditID":"%s"' % m.encode())
        self.add("audit", line, GOOD, what="duplicate auditID key, the last wins", marker=m)
        for where, key, kind, words in (
                ("requestObject", "", GOOD, ()), ("requestObject", "a.b", GOOD, ()), ("requestObject", ".", GOOD, ()),
                ("requestObject", " ", GOOD, ()),
                ("user", "", BAD, ("user", "''")), ("user", "a.b", BAD, ("user", "'a.b'")),
                ("objectRef", " ", BAD, ("objectRef",)), ("", "", BAD, ("kubernetes.audit", "''")),
                ("", "x.y", BAD, ("kubernetes.audit", "'x.y'"))):
            m = self.marker()
            rec = audit_event(m)
            if where:
                rec[where] = {**rec.get(where, {}), key: "v"}
            else:
                rec[key] = "v"
            self.add("audit", orjson.dumps(rec), kind, words, f"key {key!r} in {where or 'the Event'}", m)
        m = self.marker()
        alert = falco_alert(m)
        alert["output_fields"][""] = "v"
        alert["output_fields"]["a..b"] = "w"
        self.add("falco", orjson.dumps(alert), GOOD, what="empty and dotted keys in output_fields", marker=m)

    def wrong_types(self, sample: int | None) -> None:
        plans = [("audit", f) for f in source_fields("kubernetes.audit_logs")] + \
                [("falco", f) for f in source_fields("falco.alerts")]
        plans += [("audit", f) for f in ("requestReceivedTimestamp", "stageTimestamp", "objectRef.name",
                                         "objectRef.subresource", "kind", "auditID", "stage", "verb",
                                         "impersonatedUser", "annotations", "requestObject")]
        plans += [("falco", f) for f in ("time", "output_fields", "rule", "uuid", "priority", "tags")]
        pairs = [(s, f, what, v) for s, f in plans for what, v in WRONG_VALUES]
        if sample is not None:
            pairs = self.rng.sample(pairs, min(sample, len(pairs)))
        for source, path, what, value in pairs:
            m = self.marker()
            rec = audit_event(m) if source == "audit" else falco_alert(m)
            if path in ("auditID", "uuid"):
                m = ""   # no marker survives: only the dead letter (or a document without it) tells
            rec = _set(rec, path, value)
            name = path[3:] if path.startswith("of:") else path
            line = orjson.dumps(rec).replace(b'"@@HUGE@@"', b"1" + b"0" * 30)
            self.add(source, line, EITHER, (name, name.split(".")[-1], "event time"),
                     f"{source} {name} is {what}", m)

    def shapes(self) -> None:
        for raw, source, words in ((b"[]", "audit", ("JSON list",)), (b"null", "audit", ("NoneType",)),
                                   (b'"x"', "falco", ("JSON str",)), (b"{}", "audit", ("not an audit Event",)),
                                   (b'{"kind":"EventList","items":{}}', "audit", ("items",)),
                                   (b'{"kind":"Event","auditID":"x"', "audit", ("not valid JSON",)),
                                   (b"garbage", "falco", ("neither JSON",))):
            self.add(source, raw, BAD, words, f"shape {raw[:20]!r}")

    # --- files -----------------------------------------------------------------------------------

    def write(self, folder: Path, files_per_source: int = 3) -> Corpus:
        """Shuffle the cases into a few files per source, in the different containers."""
        for source in ("audit", "falco"):
            (folder / source).mkdir(parents=True, exist_ok=True)
        self.rng.shuffle(self.corpus.cases)
        containers = ["plain", "gzip", "zstd", "bzip2"]
        for source in ("audit", "falco"):
            cases = [c for c in self.corpus.cases if c.source == source]
            for i in range(files_per_source):
                part = cases[i::files_per_source]
                kind = containers[(i + (source == "falco")) % len(containers)]
                # Misleading names: compression is told by content.
                path = folder / source / f"{source}-{i}.{ {'plain': 'gz', 'gzip': 'log', 'zstd': 'json', 'bzip2': 'zst'}[kind]}"
                data = b"".join(c.line + b"\n" for c in part)
                for n, c in enumerate(part, 1):
                    c.file, c.line_no = str(path), n
                path.write_bytes(_compress(kind, data))
        self._truncated(folder)
        return self.corpus

    def _truncated(self, folder: Path) -> None:
        """A truncated file per container: every line before the cut indexed, one dead letter after."""
        for kind in ("gzip", "bzip2", "zstd"):
            markers = [self.marker() for _ in range(3000)]
            data = b"".join(orjson.dumps(audit_event(m)) + b"\n" for m in markers)
            whole = _compress(kind, data, level=1)
            cut = whole[: int(len(whole) * self.rng.uniform(0.4, 0.8))]
            decoded = _decode_prefix(kind, cut)
            kept = markers[: decoded.count(b"\n")]
            path = folder / "audit" / f"truncated-{kind}.log"
            path.write_bytes(cut)
            self.corpus.files.append((str(path), "audit", kept, f"input unreadable after line {len(kept)}"))


def _compress(kind: str, data: bytes, level: int = 6) -> bytes:
    if kind == "gzip":
        return gzip.compress(data, level)
    if kind == "bzip2":
        return bz2.compress(data, level)
    if kind == "zstd":
        return zstandard.ZstdCompressor(level=level).compress(data)
    return data


def _decode_prefix(kind: str, cut: bytes) -> bytes:
    """The oracle: what each format's reference decoder recovers from a cut archive."""
    import zlib

    if kind == "gzip":
        return zlib.decompressobj(wbits=31).decompress(cut)
    if kind == "bzip2":
        dec, out = bz2.BZ2Decompressor(), b""
        for i in range(0, len(cut), 65536):
            out += dec.decompress(cut[i:i + 65536])
        return out
    return zstandard.ZstdDecompressor().decompressobj().decompress(cut)


def generate(seed: int, good: int, wrong_type_sample: int | None) -> Gen:
    gen = Gen(seed)
    for family in (gen.depth, gen.sizes, gen.encodings, gen.numbers, gen.keys, gen.shapes):
        family()
    gen.wrong_types(wrong_type_sample)
    for _ in range(good):
        gen.good(gen.rng.choice(("audit", "falco")))
    return gen


MARKER = re.compile(rb"case-\d{6}")


def _marker_of(doc: dict) -> str | None:
    value = (doc.get("kubernetes", {}).get("audit") or {}).get("auditID") if "kubernetes" in doc \
        else (doc.get("falco") or {}).get("uuid")
    return value if isinstance(value, str) else None


def account(corpus: Corpus, docs: list[dict], letters: list[dict]) -> list[str]:
    """Every expectation checked against what the sink holds; returns the problems (empty: all held).

    ``letters`` are the ``kubehunt.dead_letter`` objects. A dead letter is tied to its line by
    (origin, line); one the sink made (Elasticsearch refused the document) by the marker in its raw.
    """
    import os

    problems: list[str] = []
    by_marker: dict[str, list] = {}
    unmarked_docs = 0
    for doc in docs:
        marker = _marker_of(doc)
        if marker and MARKER.fullmatch(marker.encode()):
            by_marker.setdefault(marker, []).append(doc)
        else:
            unmarked_docs += 1
    by_line = {(os.path.realpath(c.file), c.line_no): c for c in corpus.cases}
    letters_of: dict[int, list] = {}
    file_letters: dict[str, list] = {}
    for letter in letters:
        case = by_line.get((letter.get("origin"), letter.get("line")))
        if case is None:
            found = MARKER.search(letter.get("raw", "").encode())
            case = next((c for c in corpus.cases if found and c.marker == found.group().decode()), None)
        if case is not None:
            letters_of.setdefault(id(case), []).append(letter)
        else:
            file_letters.setdefault(letter.get("origin"), []).append(letter)
    unmarked_either = 0
    for c in corpus.cases:
        got_docs = by_marker.pop(c.marker, []) if c.marker else []
        got_letters = letters_of.get(id(c), [])
        where = f"{c.what} ({os.path.basename(c.file)}:{c.line_no})"
        if c.kind == GOOD:
            if len(got_docs) != 1 or got_letters:
                problems.append(f"{where}: good line gave {len(got_docs)} documents, "
                                f"{[x['reason'] for x in got_letters]} dead letters")
            continue
        if c.kind == EITHER and not c.marker and not got_letters:
            unmarked_either += 1   # its document has no marker: counted below
            continue
        outcomes = len(got_docs) + len(got_letters)
        if c.kind == BAD and (got_docs or len(got_letters) != 1):
            problems.append(f"{where}: bad line gave {len(got_docs)} documents and {len(got_letters)} dead letters")
        elif c.kind == EITHER and outcomes != 1:
            problems.append(f"{where}: gave {len(got_docs)} documents and {len(got_letters)} dead letters")
        for letter in got_letters:
            if not any(w in letter["reason"] for w in c.words):
                problems.append(f"{where}: reason {letter['reason'][:300]!r} names none of {c.words}")
    if unmarked_docs != unmarked_either:
        problems.append(f"{unmarked_docs} documents without a case marker, expected {unmarked_either}")
    for path, _source, kept, words in corpus.files:
        for m in kept:
            got = by_marker.pop(m, [])
            if len(got) != 1:
                problems.append(f"{path}: line {m} before the cut gave {len(got)} documents")
        got_letters = file_letters.pop(os.path.realpath(path), [])
        if [x["reason"].startswith(words) for x in got_letters] != [True]:
            problems.append(f"{path}: expected one dead letter starting {words!r}, got "
                            f"{[x['reason'][:120] for x in got_letters]}")
    if by_marker:
        problems.append(f"documents of no case: {sorted(by_marker)[:10]}")
    if file_letters:
        problems.append(f"dead letters of no case: {[(o, [x['reason'][:100] for x in v]) for o, v in file_letters.items()][:5]}")
    return problems
