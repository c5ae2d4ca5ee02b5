"""Elastic-compatible typing of the original event's open-ended objects, and the ingest pipeline that
keeps it storable.

Elastic's integrations type a handful of keys inside objects whose shape nobody controls
(`kubernetes.audit.requestObject` / `responseObject`, `kubernetes.audit.user.extra`,
`falco.output_fields`); its detection rules, EQL and ES|QL rely on those types. kubehunt keeps
the promise that any event is stored, so it maps the same keys the same way and adds, in the
ingest pipeline ``kubehunt-events`` (the index templates' ``final_pipeline``):

- a ``flattened`` copy of each object under ``kubehunt.flat.*`` (indexed, left out of ``_source``:
  no extra storage), so every other key stays searchable without a mapping explosion;
- a shape guard: an object that would not fit the typed keys (a scalar where Elastic maps an
  object, an object where it maps a value) is moved, whole and unchanged, to
  ``kubehunt.unfit.<name>`` (stored, not indexed) and named in ``kubehunt.unfit.fields``, instead
  of the event being rejected;
- ``event.ingested`` (``_ingest.timestamp``), ``data_stream.*`` from the destination's name, and
  ``kubehunt.timestamp`` (the exact event time, ``date_nanos``; ``@timestamp`` is a ``date``).

This module is the single source: `python -m mappings.elastic --write` regenerates the typed parts
of ``templates/component/kubehunt-{audit,falco}-mappings.json``, ``templates/component/
kubehunt-elastic.json`` and ``pipelines/kubehunt-events.json``; tests/test_templates.py fails when
the files on disk differ from what it generates.
"""
from __future__ import annotations

import json

import mappings

PIPELINE = "kubehunt-events"

# Typed keys, as elastic/integrations declares them: packages/kubernetes/data_stream/audit_logs/
# fields/fields.yml (requestObject, responseObject, user.extra) and packages/falco/data_stream/
# alerts/fields/fields.yml (output_fields). "+" marks a key Elastic does not declare but one of its
# own detection rules (or SigmaHQ's) queries: typed so those rules fire.
REQUEST_OBJECT = {
    "spec.type": "keyword",
    "spec.volumes.hostPath.path": "text",
    "spec.containers.image": "text",
    "spec.containers.HostNetwork": "boolean",
    "spec.containers.HostIPC": "boolean",
    "spec.containers.HostPID": "boolean",
    "spec.containers.volumeMounts.mountPath": "text",
    "spec.containers.securityContext.privileged": "boolean",
    "rules.verbs": "keyword",
    "rules.resources": "keyword",
    "rules.apiGroups": "keyword",
    "rules.resourceNames": "keyword",
    "rules.nonResourceURLs": "keyword",
    # + rules in elastic-main / elastic-8.12 / sigma
    "spec.hostNetwork": "boolean",
    "spec.hostPID": "boolean",
    "spec.hostIPC": "boolean",
    "spec.serviceAccountName": "keyword",
    "spec.containers.securityContext.capabilities.add": "keyword",
    "spec.containers.securityContext.capabilities.drop": "keyword",
    "spec.containers.securityContext.allowPrivilegeEscalation": "boolean",
    "roleRef.name": "keyword",
    "roleRef.kind": "keyword",
    "webhooks.clientConfig.url": "keyword",
    # ++ keys kubehunt's own hunts read (mappings/hunts/), so the rules `kubehunt rules export` writes
    # query typed fields
    "spec.initContainers.securityContext.privileged": "boolean",
    "spec.template.spec.volumes.hostPath.path": "text",
}
RESPONSE_OBJECT = {
    "spec.hostIPC": "boolean",
    "spec.hostNetwork": "boolean",
    "spec.hostPID": "boolean",
    "spec.restartPolicy": "keyword",
    "spec.containers.securityContext.privileged": "boolean",
    "spec.containers.securityContext.allowPrivilegeEscalation": "boolean",
    "spec.containers.volumeMounts.mountPath": "text",
    "spec.volumes.hostPath.path": "text",
    "rules.verbs": "keyword",
    "rules.resources": "keyword",
    "rules.apiGroups": "keyword",
    "rules.resourceNames": "keyword",
    "rules.nonResourceURLs": "keyword",
    "roleRef.kind": "keyword",
    "roleRef.name": "keyword",
}
# Falco's keys are dotted names (`proc.name`), and `container.image` sits next to
# `container.image.tag`: output_fields is mapped with subobjects: false, each key a field of its own.
OUTPUT_FIELDS = {
    "evt.pluginname": "keyword", "evt.plugininfo": "text", "evt.is_async": "boolean",
    "evt.asynctype": "keyword", "evt.latency": "long", "event.time": "date", "evt.time.iso8601": "date",
    "evt.deltatime": "long", "evt.dir": "keyword", "evt.cpu": "integer", "evt.args": "text",
    "evt.arg.flags": "text", "evt.info": "text", "evt.buflen": "unsigned_long", "evt.res": "text",
    "evt.rawres": "long", "evt.failed": "boolean", "evt.is_io": "boolean", "evt.is_io_read": "boolean",
    "evt.is_io_write": "boolean", "evt.io_dir": "keyword", "evt.is_wait": "boolean", "evt.wait_latency": "long",
    "evt.is_syslog": "boolean", "evt.count.error": "integer", "evt.count.error_file": "integer",
    "evt.count.error_net": "integer", "evt.count.error_memory": "integer", "evt.count.error_other": "integer",
    "evt.count.exit": "integer", "evt.abspath": "text", "evt.abspath_src": "text", "evt.abspath_dst": "text",
    "evt.is_open_read": "boolean", "evt.is_open_write": "boolean", "evt.is_open_exec": "boolean",
    "evt.is_open_create": "boolean", "proc.exe": "text", "proc.pexe": "text", "proc.cmdlenargs": "long",
    "proc.exeline": "text", "proc.loginshellid": "long", "proc.tty": "long", "proc.sid.exe": "text",
    "proc.vpgid.exe": "text", "proc.is_exe_writable": "boolean", "proc.is_exe_upper_layer": "boolean",
    "proc.is_exe_from_memfd": "boolean", "proc.exe_ino": "long", "proc.exe_ino_ctime": "date_nanos",
    "proc.exe_ino_mtime": "date_nanos", "proc.exe_ino_ctime_duration_proc_start": "long",
    "proc.exe_ino_ctime_duration_pidns_start": "long", "proc.pidns_init_start_ts": "date_nanos",
    "proc.thread.cap_inheritable": "keyword", "proc.is_container_healthcheck": "boolean",
    "proc.is_container_liveness_probe": "boolean", "proc.is_container_readiness_probe": "boolean",
    "proc.fdopencount": "unsigned_long", "proc.fdopenlimit": "long", "proc.fdusage": "double",
    "proc.vmsize": "unsigned_long", "proc.vmrss": "unsigned_long", "proc.vmswap": "unsigned_long",
    "proc.ppid.duration": "long", "process.parent.pid": "long", "process.pid": "long",
    "process.session_leader.pid": "long", "process.group_leader.vpid": "long", "thread.pfmajor": "unsigned_long",
    "thread.pfminor": "unsigned_long", "thread.ismain": "boolean", "thread.vtid": "long", "thread.exectime": "long",
    "thread.totalexectime": "long", "proc.nthreads": "unsigned_long",
    "proc.nchilds": "unsigned_long", "thread.cpu": "double", "thread.cpu_user": "double",
    "thread.cpu_system": "double", "thread.vmsize": "unsigned_long", "thread.vmrss": "unsigned_long",
    "user.homedir": "text", "user.shell": "keyword", "user.loginuid": "long", "user.loginname": "keyword",
    "container.id": "keyword", "container.name": "keyword", "container.healthcheck": "text",
    "container.liveness_probe": "text", "container.mounts": "text", "container.readiness_probe": "text",
    "container.start_ts": "date_nanos", "container.duration": "long",
    "fd.num": "long", "fd.type": "keyword", "fd.typechar": "keyword", "fd.name": "text", "fd.I4proto": "keyword",
    "fd.sockfamily": "keyword", "fd.is_server": "boolean", "fd.uid": "keyword", "fd.containername": "keyword",
    "fd.containerdirectory": "keyword", "fd.cproto": "keyword", "fd.sproto": "keyword", "fd.lproto": "keyword",
    "fd.rproto": "keyword", "fd.connected": "boolean", "fd.name_changed": "boolean", "fd.dev": "integer",
    "fd.dev_major": "integer", "fd.dev_minor": "integer", "fs.path.name": "keyword", "fs.path.source": "keyword",
    "fs.path.target": "keyword", "fdlist.names": "keyword", "fdlist.cips": "ip", "fdlist.sips": "ip",
    "fdlist.cports": "ip", "fdlist.sports": "ip", "client.ip": "ip", "server.ip": "ip", "source.ip": "ip",
    "destination.ip": "ip", "k8s.pod.sandbox_id": "keyword", "k8s.pod.full_sandbox_id": "keyword",
    "output": "text", "priority": "keyword", "rule": "text", "evt.num": "integer", "evt.time": "date",
    "evt.source": "text", "evt.hostname": "text", "proc.exepath": "text", "proc.pexepath": "text",
    "proc.name": "text", "proc.pname": "text", "proc.cmdline": "text", "proc.pcmdline": "text",
    "proc.cmdnargs": "integer", "proc.args": "text", "proc.env": "text", "proc.cwd": "text", "proc.ppid": "integer",
    "proc.vpid": "integer", "proc.pvpid": "integer", "proc.sid": "integer", "proc.sname": "text",
    "proc.sid.exepath": "text", "proc.vpgid": "integer", "proc.vpgid.name": "text", "proc.vpgid.exepath": "text",
    "proc.duration": "text", "proct.ppid.duration": "text", "proc.pid.ts": "text", "proc.ppid.ts": "text",
    "proc.is_sid_leader": "boolean", "proc.is_vpgid_leader": "boolean", "thread.cap_permitted": "text",
    "thread.cap_effective": "text", "thread.tid": "integer", "user.uid": "integer", "user.name": "text",
    "group.gid": "integer", "group.name": "text", "container.image.digest": "text", "container.image.tag": "text",
    "container.full_id": "text", "container.image.full_id": "keyword", "container.image.id": "keyword",
    "container.image.repository": "keyword", "container.type": "text", "container.privileged": "boolean",
    "container.ip": "text", "container.image.name": "text", "fd.directory": "text", "fd.filename": "text",
    "fd.cport": "long", "fd.sport": "long", "fd.lport": "long", "fd.rport": "long", "fd.cip.name": "text",
    "fd.sip.name": "text", "fd.lip.name": "text", "fd.rip.name": "text", "fd.ino": "text",
    "syslog.facility.str": "text", "syslog.facility": "text", "syslog.severity.str": "text",
    "syslog.severity": "text", "k8s.ns.name": "text", "k8s.pod.name": "text", "k8s.pod.uid": "text",
    "k8s.pod.labels": "text", "k8s.pod.ip": "text", "evt.category": "text", "evt.type": "text",
    # Elastic: evt.buffer binary, thread.cgroups flattened, container.cni_json / k8s.pod.cni_json
    # object. Falco's JSON output sends all four as strings (a binary field needs base64, a
    # flattened one an object), so they are keyword here: stored and searchable, never a rejection.
    "evt.buffer": "keyword", "thread.cgroups": "keyword", "container.cni_json": "keyword",
    "k8s.pod.cni_json": "keyword",
}

# Where each typed object lives, its flattened copy and its shape.
OBJECTS = [
    # (path, flattened copy, kind, typed keys)
    ("kubernetes.audit.requestObject", "kubehunt.flat.request_object", "object", REQUEST_OBJECT),
    ("kubernetes.audit.responseObject", "kubehunt.flat.response_object", "object", RESPONSE_OBJECT),
    # annotations: Elastic maps `annotations.*` dynamically; a flattened field here would hide the
    # runtime fields with Elastic's renamed keys (authorization_k8s_io/decision) from ES|QL on 8.12.
    ("kubernetes.audit.annotations", None, "keys", None),
    ("kubernetes.audit.user.extra", None, "keys", None),
    ("kubernetes.audit.impersonatedUser.extra", None, "keys", None),
    ("falco.output_fields", "kubehunt.flat.output_fields", "keys", OUTPUT_FIELDS),
]


def _leaf(kind: str) -> dict:
    if kind == "text":
        # Elastic declares these `text`; its own rules then miss: `hostPath.path: "/"` analyses to no
        # term at all and `not ...image: docker.elastic.co/beats/elastic-agent*` matches no token, so
        # the exceptions never apply. keyword gives the exact and wildcard matching the rules (and
        # Elastic's KQL evaluator) mean, and lets EQL compare and ES|QL group on them.
        kind = "keyword"
    body: dict = {"type": kind}
    if kind == "keyword":
        body["ignore_above"] = 1024
    elif kind in ("long", "integer", "unsigned_long", "double", "ip", "boolean"):
        body["ignore_malformed"] = True
    elif kind in ("date", "date_nanos"):
        # No epoch format: Falco sends these as epoch *nanoseconds*, which a date field would read
        # as milliseconds (a bogus year); such a value is ignored (kept in _source) instead.
        body.update(ignore_malformed=True, format="strict_date_optional_time_nanos"
                    if kind == "date_nanos" else "strict_date_optional_time")
    return body


def _nested(keys: dict[str, str]) -> dict:
    props: dict = {}
    for name, kind in sorted(keys.items()):
        node = props
        *parents, leaf = name.split(".")
        for part in parents:
            node = node.setdefault(part, {"properties": {}})["properties"]
        node[leaf] = _leaf(kind)
    return props


def object_mapping(path: str) -> dict:
    """The mapping of one typed object (as it appears under its parent's `properties`)."""
    _, _, kind, keys = next(o for o in OBJECTS if o[0] == path)
    if kind == "object":
        return {"type": "object", "dynamic": False, "properties": _nested(keys)}
    body = {"type": "object", "subobjects": False}
    if keys is None:
        # user.extra: Elastic maps every key as keyword (`extra.*`, object_type keyword). The keys
        # are the authenticator's (bounded); subobjects: false keeps `a` and `a.b` apart.
        body["dynamic"] = True
    else:
        body.update(dynamic=False, properties={k: _leaf(v) for k, v in sorted(keys.items())})
    return body


def dynamic_templates() -> list[dict]:
    return [{f"kubehunt_{path.replace('.', '_')}": {
        "path_match": f"{path}.*", "mapping": {"type": "keyword", "ignore_above": 1024}}}
        for path, _, kind, keys in OBJECTS if kind == "keys" and keys is None]


def skeleton(path: str):
    """What the pipeline's guard checks: nested dict of typed keys ("leaf" at a value), or "keys"."""
    _, _, kind, keys = next(o for o in OBJECTS if o[0] == path)
    if kind == "keys":
        return "keys"
    tree: dict = {}
    for name in keys:
        node = tree
        *parents, leaf = name.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = "leaf"
    return tree


_SCRIPT = """
boolean leafOk(def v) {
  if (v instanceof Map) { return false; }
  if (v instanceof List) { for (def i : v) { if (i != null && !leafOk(i)) { return false; } } }
  return true;
}
boolean badKey(def k) { return !(k instanceof String) || k.trim().isEmpty(); }
boolean objOk(def v, def s) {
  if (v == null) { return true; }
  if (v instanceof List) { for (def i : v) { if (!objOk(i, s)) { return false; } } return true; }
  if (!(v instanceof Map)) { return false; }
  for (def e : v.entrySet()) {
    def k = e.getKey();
    if (badKey(k) || k.indexOf('.') >= 0) { return false; }
    def sub = s.get(k);
    if (sub == null || e.getValue() == null) { continue; }
    if (sub instanceof Map) { if (!objOk(e.getValue(), sub)) { return false; } }
    else if (!leafOk(e.getValue())) { return false; }
  }
  return true;
}
boolean keysOk(def v) {
  if (v == null) { return true; }
  if (!(v instanceof Map)) { return false; }
  for (def e : v.entrySet()) {
    def k = e.getKey();
    if (badKey(k) || k.startsWith('.') || k.endsWith('.') || k.indexOf('..') >= 0 || !leafOk(e.getValue())) { return false; }
  }
  return true;
}
Map child(Map m, String k) {
  def c = m.get(k);
  if (!(c instanceof Map)) { c = new HashMap(); m.put(k, c); }
  return c;
}
String name = ctx._index;
if (name != null) {
  def parts = name.splitOnToken('-', 3);
  if (parts.length == 3) {
    Map ds = child(ctx, 'data_stream');
    ds.type = parts[0]; ds.dataset = parts[1]; ds.namespace = parts[2];
  }
}
if (ctx['@timestamp'] != null) { child(ctx, 'kubehunt').timestamp = ctx['@timestamp']; }
for (def o : params.objects) {
  def parent = ctx;
  def path = o.path;
  for (int i = 0; i < path.length - 1 && parent != null; i++) {
    def next = parent.get(path[i]);
    parent = next instanceof Map ? next : null;
  }
  if (parent == null) { continue; }
  def last = path[path.length - 1];
  def v = parent.get(last);
  if (v == null) { continue; }
  if (o.flat != null && (v instanceof Map || v instanceof List)) {
    child(child(ctx, 'kubehunt'), 'flat').put(o.flat, v);
  }
  boolean ok = o.skel instanceof Map ? objOk(v, o.skel) : keysOk(v);
  if (!ok) {
    parent.remove(last);
    Map unfit = child(child(ctx, 'kubehunt'), 'unfit');
    unfit.put(o.name, v);
    def fields = unfit.get('fields');
    if (!(fields instanceof List)) { fields = new ArrayList(); unfit.put('fields', fields); }
    fields.add(o.dotted);
  }
}
"""


def pipeline_body() -> dict:
    objects = [{"path": path.split("."), "dotted": path, "name": path.replace(".", "_"),
                "flat": flat.rsplit(".", 1)[-1] if flat else None, "skel": skeleton(path)}
               for path, flat, _, _ in OBJECTS]
    return {
        "description": "kubehunt: event.ingested, data_stream.* from the destination, kubehunt.timestamp, "
                       "flattened copies and the shape guard of typed objects (generated by "
                       "`python -m mappings.elastic --write`)",
        "processors": [
            {"set": {"field": "event.ingested", "value": "{{{_ingest.timestamp}}}", "tag": "event-ingested"}},
            {"script": {"lang": "painless", "tag": "kubehunt-shape", "source": _SCRIPT.strip(),
                        "params": {"objects": objects}}},
        ],
        "_meta": {"managed_by": "kubehunt"},
    }


def elastic_component() -> dict:
    """Fields the pipeline and `--keep-original` add, shared by both event templates."""
    flat = {"type": "flattened", "depth_limit": 1000, "ignore_above": 1024}
    return {
        "_meta": {"description": "Elastic-compatibility fields written at index time by the kubehunt-events "
                                 "pipeline (generated by `python -m mappings.elastic --write`)",
                  "managed_by": "kubehunt"},
        "template": {
            "settings": {"index": {"final_pipeline": PIPELINE}},
            "mappings": {
                # The flattened copies are indexed only: the original is in _source already.
                "_source": {"excludes": ["kubehunt.flat"]},
                "dynamic_templates": dynamic_templates(),
                "properties": {
                    "event": {"properties": {
                        "ingested": {"type": "date"},
                        "original": {"type": "keyword", "index": False, "doc_values": False},
                    }},
                    # ECS fields Elastic's cross-cloud ES|QL rules name (8.12 refuses an unknown column).
                    "cloud": {"properties": {name: {"type": "keyword", "ignore_above": 1024}
                                             for name in ("provider", "region")} | {
                        "account": {"properties": {"id": {"type": "keyword", "ignore_above": 1024}}}}},
                    "kubehunt": {"properties": {
                        "timestamp": {"type": "date_nanos"},
                        "flat": {"properties": {o[1].rsplit(".", 1)[-1]: flat for o in OBJECTS if o[1]}},
                        "unfit": {"type": "object", "enabled": False},
                    }},
                },
            },
        },
    }


def _set_path(props: dict, path: list[str], body: dict) -> None:
    node = props
    for part in path[:-1]:
        node = node[part]["properties"]
    node[path[-1]] = body


def typed_component(file_stem: str) -> dict:
    """The component template on disk with the typed objects it holds regenerated."""
    body = json.loads(mappings.path("templates", "component", f"{file_stem}.json").read_text())
    props = body["template"]["mappings"]["properties"]
    root = "kubernetes" if "audit" in file_stem else "falco"
    guarded = []
    for path, _, _, _ in OBJECTS:
        if path.split(".")[0] == root:
            _set_path(props, path.split("."), object_mapping(path))
            guarded.append(path)
    body["_meta"]["kubehunt_guarded"] = guarded
    return body


def render(body: dict) -> str:
    return json.dumps(body, indent=2, sort_keys=True) + "\n"


def generated_files() -> dict:
    """Relative path (under mappings/) -> content."""
    return {
        "templates/component/kubehunt-audit-mappings.json": render(typed_component("kubehunt-audit-mappings")),
        "templates/component/kubehunt-falco-mappings.json": render(typed_component("kubehunt-falco-mappings")),
        "templates/component/kubehunt-elastic.json": render(elastic_component()),
        "pipelines/kubehunt-events.json": render(pipeline_body()),
    }


if __name__ == "__main__":
    import sys

    if sys.argv[1:] != ["--write"]:
        sys.exit("usage: python -m mappings.elastic --write")
    for rel, text in generated_files().items():
        out = mappings.path(*rel.split("/"))
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text)
        print(f"wrote {out}")
