"""`kubehunt setup`: make the destinations ready, idempotently, and check the server can take them.

What it installs (all from data files in ``mappings/``):

1. ingest pipelines (``pipelines/*.json``: ``kubehunt-events``, the event templates'
   ``final_pipeline``, sets ``event.ingested`` and ``data_stream.*``), then component templates
   (``templates/component/*.json``) then index templates (``templates/index/*.json``), the file
   stem being the name;
2. optionally (``--ilm-policy``) the ILM policy ``ilm/kubehunt-30d-delete.json``, attached to the
   event data streams' backing indices;
3. the event data streams (one per source of ``transforms.sources``) when an index template makes
   them data streams;
4. the incidents and dead-letter indices with their mappings (``indices/*.json``), under the
   configured names.

Every object carries ``_meta.kubehunt_digest`` (a hash of its file), so a second run reads the
cluster's state in a handful of GETs and writes nothing: ``kubehunt run`` calls
``ensure_destinations`` before every run unless ``--no-setup``.

Errors become ``SetupError`` with a message that says what to fix and never contains a secret.
"""
from __future__ import annotations

import copy
import hashlib
import json
import logging
from pathlib import Path

from transforms.elasticsearch import DEAD_LETTERS, INCIDENTS, EsConfigError, EsSettings, describe_error
from transforms.sources import NAMES as SOURCE_NAMES

log = logging.getLogger("kubehunt.setup")

SUPPORTED_MAJOR = 8
ILM_POLICY = "kubehunt-30d-delete"


class SetupError(EsConfigError):
    """The cluster cannot take our documents; the message says what to fix."""


def _load(file: Path) -> dict:
    """A mapping file without its ``_comment`` keys, stamped with the digest of its content."""
    body = {k: v for k, v in json.loads(file.read_text()).items() if not k.startswith("_comment")}
    digest = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:16]
    return body, digest


def _with_meta(body: dict, digest: str, where: tuple[str, ...] = ()) -> dict:
    body = copy.deepcopy(body)
    target = body
    for key in where:
        target = target.setdefault(key, {})
    target["_meta"] = {**target.get("_meta", {}), "kubehunt_digest": digest}
    return body


def _template_files(kind: str) -> list[Path]:
    import mappings

    return sorted(mappings.path("templates", kind).glob("*.json"))


def _pipeline_files() -> list[Path]:
    import mappings

    return sorted(mappings.path("pipelines").glob("*.json"))


def install_pipelines(client, *, only_changed: bool = False) -> list[str]:
    """Install the ingest pipelines the templates name; returns ``pipeline:name`` of those written."""
    from elasticsearch import NotFoundError

    installed = []
    for file in _pipeline_files():
        body, digest = _load(file)
        if only_changed:
            try:
                current = client.ingest.get_pipeline(id=file.stem).body.get(file.stem, {})
            except NotFoundError:
                current = {}
            if (current.get("_meta") or {}).get("kubehunt_digest") == digest:
                continue
        client.ingest.put_pipeline(id=file.stem, **_with_meta(body, digest))
        installed.append(f"pipeline:{file.stem}")
    return installed


def install_templates(client, *, only_changed: bool = False) -> list[str]:
    """Install every component template then every index template; idempotent.

    With ``only_changed`` a template whose installed digest matches its file is not written again
    (two GETs instead of one PUT per template). Returns ``kind:name`` of the templates written.
    The ingest pipelines the templates name are installed first when missing or changed (not
    listed: ``ensure_destinations`` reports them).
    """
    install_pipelines(client, only_changed=True)
    installed = []
    current: dict[str, dict[str, str | None]] = {"component": {}, "index": {}}
    if only_changed:
        for item in client.cluster.get_component_template().body.get("component_templates", []):
            current["component"][item["name"]] = (item["component_template"].get("_meta") or {}).get("kubehunt_digest")
        for item in client.indices.get_index_template().body.get("index_templates", []):
            current["index"][item["name"]] = (item["index_template"].get("_meta") or {}).get("kubehunt_digest")
    for kind in ("component", "index"):
        for file in _template_files(kind):
            body, digest = _load(file)
            if only_changed and current[kind].get(file.stem) == digest:
                continue
            body = _with_meta(body, digest)
            if kind == "component":
                client.cluster.put_component_template(name=file.stem, **body)
            else:
                client.indices.put_index_template(name=file.stem, **body)
            installed.append(f"{kind}:{file.stem}")
    return installed


def _check_server(client, settings: EsSettings) -> str:
    from elastic_transport import TlsError
    from elasticsearch import ApiError, TransportError, UnsupportedProductError

    where = ", ".join(settings.hosts)
    try:
        info = client.info()
    except UnsupportedProductError:
        raise SetupError(f"{where} is not Elasticsearch (kubehunt needs Elasticsearch {SUPPORTED_MAJOR}.x)") from None
    except ApiError as err:
        hint = ""
        if err.status_code == 401:
            hint = (" — authentication failed: check --es-username with $KUBEHUNT_ES_PASSWORD / --es-password-file, "
                    "$KUBEHUNT_ES_API_KEY / --es-api-key-file, or $KUBEHUNT_ES_BEARER_TOKEN / --es-bearer-token-file")
        elif err.status_code == 403:
            hint = " — the user lacks privileges (needs monitor, manage_index_templates, manage_ilm and create_index)"
        raise SetupError(f"Elasticsearch at {where} refused the connection check: {describe_error(err)}{hint}") from None
    except TransportError as err:
        hint = (" — the TLS handshake failed: pass the server's CA bundle with --es-ca-certs, check "
                "--es-client-cert/--es-client-key, or (for tests only) --no-es-verify-certs"
                if isinstance(err, TlsError) else
                " — start the local node with `scripts/elasticsearch.sh start`, or point --es-url / "
                "$KUBEHUNT_ES_URL at your cluster")
        raise SetupError(f"Elasticsearch at {where} is unreachable ({describe_error(err)}){hint}") from None
    version = info["version"]["number"]
    if not version.startswith(f"{SUPPORTED_MAJOR}."):
        raise SetupError(f"Elasticsearch {version} at {where} is not supported: kubehunt needs "
                         f"{SUPPORTED_MAJOR}.x (the Python client is pinned <9)")
    return version


def _install_ilm(client, streams: list[str]) -> list[str]:
    import mappings

    body, digest = _load(mappings.path("ilm", f"{ILM_POLICY}.json"))
    done = []
    from elasticsearch import NotFoundError

    try:
        current = client.ilm.get_lifecycle(name=ILM_POLICY).body[ILM_POLICY]["policy"]
    except NotFoundError:   # not installed yet
        current = {}
    if (current.get("_meta") or {}).get("kubehunt_digest") != digest:
        client.ilm.put_lifecycle(name=ILM_POLICY, **_with_meta(body, digest, ("policy",)))
        done.append(f"ilm:{ILM_POLICY}")
    for stream in streams:
        # Backing indices made by a later rollover take the setting from their index template (the
        # event templates may name this policy); the existing ones get it here.
        if not client.indices.exists(index=stream):
            continue
        current_settings = client.indices.get_settings(index=stream, name="index.lifecycle.name").body
        names = {(v.get("settings", {}).get("index", {}).get("lifecycle") or {}).get("name")
                 for v in current_settings.values()}
        if names != {ILM_POLICY}:
            client.indices.put_settings(index=stream, settings={"index.lifecycle.name": ILM_POLICY})
            done.append(f"ilm-attached:{stream}")
    return done


def _ensure_stream(client, name: str) -> str | None:
    """Create the data stream `name` if a template makes it one; else it is created on first write."""
    from elasticsearch import ApiError

    if client.indices.exists(index=name):
        return None
    try:
        client.indices.create_data_stream(name=name)
    except ApiError as err:
        text = str(err)
        if "already_exists" in text:          # another run created it meanwhile
            return None
        if "no matching index template" in text:
            log.info("%s: no index template makes it a data stream; it is created as an index on first write", name)
            return None
        raise
    return f"data_stream:{name}"


def _ensure_index(client, name: str, file_stem: str) -> str | None:
    """Create the index with its mapping file, or bring an existing one's mapping up to date."""
    import mappings
    from elasticsearch import BadRequestError

    body, digest = _load(mappings.path("indices", f"{file_stem}.json"))
    body = _with_meta(body, digest, ("mappings",))
    if client.indices.exists(index=name):
        current = client.indices.get_mapping(index=name).body
        meta = next(iter(current.values()), {}).get("mappings", {}).get("_meta") or {}
        if meta.get("kubehunt_digest") == digest:
            return None
        try:
            # Additive update; a field whose type changed cannot be updated in place.
            client.indices.put_mapping(index=name, **body["mappings"])
        except BadRequestError as err:
            raise SetupError(f"index {name} exists with a mapping that conflicts with mappings/indices/"
                             f"{file_stem}.json ({describe_error(err)}); reindex it or choose another name") from None
        return f"mapping-updated:{name}"
    try:
        client.indices.create(index=name, settings=body.get("settings"), mappings=body["mappings"])
    except BadRequestError as err:
        if "resource_already_exists_exception" in str(err):  # another run created it meanwhile
            return None
        raise SetupError(f"cannot create index {name}: {describe_error(err)}") from None
    return f"index:{name}"


def ensure_destinations(settings: EsSettings, *, ilm_policy: bool = False) -> dict:
    """Check the server and install everything the destinations need; fast when already done.

    Returns ``{"version": "8.x.y", "changed": [what was written]}``.
    """
    from elasticsearch import ApiError

    client = settings.client()
    try:
        version = _check_server(client, settings)
        changed: list[str] = []
        try:
            changed += install_pipelines(client, only_changed=True)
            changed += install_templates(client, only_changed=True)
            streams = [settings.index_for(k) for k in SOURCE_NAMES]
            for stream in streams:
                made = _ensure_stream(client, stream)
                if made:
                    changed.append(made)
            if ilm_policy:
                changed += _install_ilm(client, streams)
            for kind in (INCIDENTS, DEAD_LETTERS):
                made = _ensure_index(client, settings.index_for(kind), f"kubehunt-{kind.replace('_', '-')}")
                if made:
                    changed.append(made)
        except ApiError as err:
            raise SetupError(f"setting up the destinations failed: {describe_error(err)}") from None
    finally:
        client.close()
    if changed:
        log.info("kubehunt setup: %s", ", ".join(changed))
    return {"version": version, "changed": changed}


def cmd_setup(args) -> int:
    from pipeline.options import es_settings_from_args

    result = ensure_destinations(es_settings_from_args(args), ilm_policy=getattr(args, "ilm_policy", False))
    changed = ", ".join(result["changed"]) or "nothing to change"
    print(f"kubehunt setup: Elasticsearch {result['version']} ready ({changed})")
    return 0
