"""Computed ECS fields of Kubernetes audit Events (`=audit_*` in kubernetes.audit_logs.yaml)."""
from __future__ import annotations

from functools import lru_cache
from urllib.parse import parse_qs, urlsplit

from transforms.ecs.filters import ecs_function
from transforms.ecs.times import parse_time

_IAM = {"clusterroles", "clusterrolebindings", "roles", "rolebindings", "serviceaccounts",
        "certificatesigningrequests", "subjectaccessreviews", "selfsubjectaccessreviews",
        "localsubjectaccessreviews", "selfsubjectrulesreviews"}
_AUTHN = {"tokenreviews", "selfsubjectreviews"}
_CONFIG = {"secrets", "configmaps", "pods", "deployments", "daemonsets", "statefulsets", "replicasets",
           "jobs", "cronjobs", "namespaces", "services", "networkpolicies", "validatingwebhookconfigurations",
           "mutatingwebhookconfigurations", "customresourcedefinitions", "nodes", "persistentvolumes",
           "persistentvolumeclaims", "ingresses", "podsecuritypolicies", "priorityclasses"}
_PROCESS_SUB = {"exec", "attach"}
_NETWORK_SUB = {"portforward", "proxy"}
_VERB_TYPE = {"create": "creation", "update": "change", "patch": "change", "delete": "deletion",
              "deletecollection": "deletion", "get": "access", "list": "access", "watch": "access",
              "impersonate": "admin", "escalate": "admin", "bind": "admin", "approve": "admin"}


# Where the event time is looked for, in order (also named by the "no usable event time" reason).
TIME_FIELDS = ("requestReceivedTimestamp", "timestamp", "stageTimestamp")


def time_candidates(ev: dict) -> list[tuple[str, object]]:
    """(field, value) of each time field the record has, for the dead-letter reason."""
    return [(key, ev[key]) for key in TIME_FIELDS if ev.get(key) is not None]


def _ref(ev: dict) -> dict:
    ref = ev.get("objectRef")
    return ref if type(ref) is dict else {}


@ecs_function
def audit_timestamp(ev: dict):
    """requestReceivedTimestamp (v1), else the legacy v1beta1 `timestamp`, else stageTimestamp."""
    for key in TIME_FIELDS:
        value = ev.get(key)
        if value:
            text = parse_time(value) if type(value) is str else None
            if text:
                return text
    return None


@ecs_function
def audit_outcome(ev: dict):
    """The response code when there is one (an admission webhook can refuse an authorised request);
    else Elastic's rule: the authorization decision annotation."""
    status = ev.get("responseStatus")
    code = status.get("code") if type(status) is dict else None
    if type(code) is int and code > 0:
        return "success" if code < 400 else "failure"
    annotations = ev.get("annotations")
    if type(annotations) is dict:
        decision = annotations.get("authorization.k8s.io/decision")
        if decision == "allow":
            return "success"
        if decision == "forbid":
            return "failure"
    return None


def _text(value) -> str | None:
    """A string or None: hostile input puts lists and objects where a name belongs (unhashable)."""
    return value if type(value) is str else None


@ecs_function
def audit_category(ev: dict):
    ref = _ref(ev)
    resource, sub = _text(ref.get("resource")), _text(ref.get("subresource"))
    if sub in _PROCESS_SUB:
        return ["api", "process"]
    if sub in _NETWORK_SUB:
        return ["api", "network"]
    if resource in _IAM or (resource == "serviceaccounts" and sub == "token"):
        return ["api", "iam"]
    if resource in _AUTHN:
        return ["api", "authentication"]
    if resource in _CONFIG:
        return ["api", "configuration"]
    return ["api"]


@ecs_function
def audit_type(ev: dict):
    ref = _ref(ev)
    verb = ev.get("verb")
    if _text(ref.get("subresource")) in _PROCESS_SUB and verb in ("create", "get"):
        types = ["start"]
    else:
        verb_type = _VERB_TYPE.get(verb) if type(verb) is str else None
        types = [verb_type] if verb_type else []
    annotations = ev.get("annotations")
    decision = annotations.get("authorization.k8s.io/decision") if type(annotations) is dict else None
    if decision == "allow":
        types.append("allowed")
    elif decision == "forbid":
        types.append("denied")
    return types or ["info"]


@ecs_function
def audit_resource_name(ev: dict):
    name = _ref(ev).get("name")
    if name:
        return name
    # Pods created through generateName have no name in the request; the response carries it.
    resp = ev.get("responseObject")
    meta = resp.get("metadata") if type(resp) is dict else None
    name = meta.get("name") if type(meta) is dict else None
    if name:
        return name
    # GKE records name non-resource URLs (readyz, /version) only in resourceName.
    proto = ev.get("protoPayload")
    return proto.get("resourceName") if type(proto) is dict and not ev.get("objectRef") else None


def _exec_query(ev: dict) -> dict | None:
    if _text(_ref(ev).get("subresource")) not in _PROCESS_SUB:
        return None
    uri = ev.get("requestURI")
    if type(uri) is not str or "?" not in uri:
        return None
    return parse_qs(urlsplit(uri).query)


@ecs_function
def audit_exec_args(ev: dict):
    """`?command=sh&command=-c&command=id` -> ["sh", "-c", "id"] (URL-decoded)."""
    query = _exec_query(ev)
    return (query or {}).get("command")


@ecs_function
def audit_exec_command(ev: dict):
    args = audit_exec_args(ev)
    if not args:
        return None
    # Quote arguments with spaces so `sh -c "cat /etc/shadow"` reads as typed.
    return " ".join(a if a and not any(c.isspace() for c in a) else '"' + a.replace('"', '\\"') + '"'
                    for a in args)


@ecs_function
def audit_exec_container(ev: dict):
    query = _exec_query(ev)
    containers = (query or {}).get("container")
    return containers[0] if containers else None


@ecs_function
def audit_process_name(ev: dict):
    args = audit_exec_args(ev)
    return args[0].rsplit("/", 1)[-1] if args and args[0] else None


@ecs_function
def audit_related_user(ev: dict):
    out = []
    for block in (ev.get("user"), ev.get("impersonatedUser")):
        if type(block) is dict:
            for key in ("uid", "username"):
                value = block.get(key)
                if type(value) is str and value and value not in out:
                    out.append(value)
    return out


def _extra(ev: dict, key: str):
    user = ev.get("user")
    extra = user.get("extra") if type(user) is dict else None
    value = extra.get(key) if type(extra) is dict else None
    if type(value) is list:
        value = value[0] if len(value) == 1 else (value or None)
    return value


@ecs_function
def audit_caller_pod_name(ev: dict):
    return _extra(ev, "authentication.kubernetes.io/pod-name")


@ecs_function
def audit_caller_pod_uid(ev: dict):
    return _extra(ev, "authentication.kubernetes.io/pod-uid")


@ecs_function
def audit_caller_node_name(ev: dict):
    return _extra(ev, "authentication.kubernetes.io/node-name")


@ecs_function
def audit_caller_credential_id(ev: dict):
    return _extra(ev, "authentication.kubernetes.io/credential-id")


def _service_account(ev: dict, block: str):
    user = ev.get(block)
    name = user.get("username") if type(user) is dict else None
    if type(name) is str and name.startswith("system:serviceaccount:"):
        return _sa_parts(name)
    return None


@lru_cache(maxsize=4096)
def _sa_parts(name: str) -> tuple[str, str] | None:
    """`system:serviceaccount:NS:NAME` -> (NS, NAME); cached: a cluster has few service accounts."""
    parts = name.split(":")
    if len(parts) == 4 and parts[2] and parts[3]:
        return parts[2], parts[3]
    return None


@ecs_function
def audit_caller_sa_namespace(ev: dict):
    sa = _service_account(ev, "user")
    return sa[0] if sa else None


@ecs_function
def audit_caller_sa_name(ev: dict):
    sa = _service_account(ev, "user")
    return sa[1] if sa else None


@ecs_function
def audit_pod_images(ev: dict):
    """Container images of a pod create/update (requestObject.spec), for image allow-list hunts."""
    if _ref(ev).get("resource") != "pods" or _ref(ev).get("subresource"):
        return None
    obj = ev.get("requestObject")
    spec = obj.get("spec") if type(obj) is dict else None
    if type(spec) is not dict:
        return None
    images = []
    for key in ("initContainers", "containers", "ephemeralContainers"):
        containers = spec.get(key)
        if type(containers) is list:
            for c in containers:
                image = c.get("image") if type(c) is dict else None
                if type(image) is str and image not in images:
                    images.append(image)
    return images or None

