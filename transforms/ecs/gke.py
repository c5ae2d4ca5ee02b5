"""GKE Cloud Logging audit records (protoPayload) seen as Kubernetes audit Events."""
from __future__ import annotations

import re

from transforms.ecs.errors import NormaliseError

_GRPC_TO_HTTP = {0: 200, 1: 499, 2: 500, 3: 400, 4: 504, 5: 404, 6: 409, 7: 403, 8: 429, 9: 400,
                 10: 409, 11: 400, 12: 501, 13: 500, 14: 503, 15: 500, 16: 401}


def _gke_object_ref(resource_name: str) -> dict | None:
    """`core/v1/namespaces/default/pods/web-1/exec` -> objectRef; None for non-resource URLs."""
    parts = resource_name.split("/")
    if len(parts) < 3 or not re.fullmatch(r"v\d+\w*", parts[1]):
        return None
    group, version, rest = parts[0], parts[1], parts[2:]
    ref = {"apiGroup": "" if group == "core" else group, "apiVersion": version}
    if rest[0] == "namespaces" and len(rest) >= 3:
        ref["namespace"] = rest[1]
        rest = rest[2:]
    ref["resource"] = rest[0]
    if len(rest) > 1:
        ref["name"] = rest[1]
    if len(rest) > 2:
        ref["subresource"] = rest[2]
    return ref


def gke_to_event(record: dict) -> dict:
    """A GKE Cloud Logging audit record -> the same record plus the audit Event fields hunts read.

    Every original key stays (protoPayload, resource, labels, timestamp, receiveTimestamp ...); the
    Event fields are derived from protoPayload: verb from methodName, objectRef from resourceName,
    user from authenticationInfo, sourceIPs/userAgent from requestMetadata, request/response
    objects, the gRPC status as an HTTP code, labels as annotations, insertId as auditID.
    """
    proto = record.get("protoPayload")
    if type(proto) is not dict:
        raise NormaliseError("GKE record has no protoPayload object")
    ev = dict(record)
    method = proto.get("methodName")
    if type(method) is str and method:
        ev["verb"] = method.rsplit(".", 1)[-1]
    resource_name = proto.get("resourceName")
    if type(resource_name) is str:
        ref = _gke_object_ref(resource_name)
        if ref:
            ev["objectRef"] = ref
        else:
            ev["requestURI"] = "/" + resource_name.lstrip("/")
    auth = proto.get("authenticationInfo")
    principal = auth.get("principalEmail") if type(auth) is dict else None
    if type(principal) is str:
        ev["user"] = {"username": principal}
    meta = proto.get("requestMetadata")
    if type(meta) is dict:
        if type(meta.get("callerIp")) is str:
            ev["sourceIPs"] = [meta["callerIp"]]
        if type(meta.get("callerSuppliedUserAgent")) is str:
            ev["userAgent"] = meta["callerSuppliedUserAgent"]
    if type(proto.get("request")) is dict:
        ev["requestObject"] = proto["request"]
    if type(proto.get("response")) is dict:
        ev["responseObject"] = proto["response"]
    status = proto.get("status")
    if type(status) is dict:
        code = status.get("code", 0)
        response = {"code": _GRPC_TO_HTTP.get(code, 500) if type(code) is int else 500}
        if type(status.get("message")) is str:
            response["message"] = status["message"]
        ev["responseStatus"] = response
    if "auditID" not in ev:
        audit_id = record.get("insertId") or (record.get("operation") or {}).get("id")
        if audit_id:
            ev["auditID"] = audit_id
    if type(record.get("timestamp")) is str:
        ev.setdefault("requestReceivedTimestamp", record["timestamp"])
        ev.setdefault("stageTimestamp", record["timestamp"])
    if type(record.get("labels")) is dict and "annotations" not in ev:
        ev["annotations"] = record["labels"]
    return ev

