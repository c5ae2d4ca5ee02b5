"""`kubehunt setup`: make the destinations ready (server check, templates, indices); idempotent."""
from __future__ import annotations

import logging

from transforms.elasticsearch import EsConfigError, EsSettings

log = logging.getLogger("kubehunt.setup")


class SetupError(EsConfigError):
    """The cluster cannot take our documents; the message says what to fix."""


def install_templates(client) -> list[str]:
    """Install every component template (mappings/templates/component/*.json) then every index
    template (mappings/templates/index/*.json); the file stem is the template name. Idempotent."""
    import json

    import mappings

    installed = []
    for kind in ("component", "index"):
        for file in sorted(mappings.path("templates", kind).glob("*.json")):
            body = json.loads(file.read_text())
            if kind == "component":
                client.cluster.put_component_template(name=file.stem, **body)
            else:
                client.indices.put_index_template(name=file.stem, **body)
            installed.append(f"{kind}:{file.stem}")
    return installed


def ensure_destinations(settings: EsSettings) -> dict:
    from elasticsearch import ConnectionError as EsConnectionError

    client = settings.client()
    try:
        info = client.info()
    except EsConnectionError as err:
        raise SetupError(f"Elasticsearch at {', '.join(settings.hosts)} is unreachable ({type(err).__name__}); "
                         "start the local node with `scripts/elasticsearch.sh start`, or point --es-url / "
                         "$KUBEHUNT_ES_URL at your cluster") from None
    finally:
        client.close()
    version = info["version"]["number"]
    if not version.startswith("8."):
        raise SetupError(f"Elasticsearch {version} is not supported: kubehunt needs 8.x")
    return {"version": version}


def cmd_setup(args) -> int:
    from pipeline.options import es_settings_from_args

    result = ensure_destinations(es_settings_from_args(args))
    print(f"kubehunt setup: Elasticsearch {result['version']} ready")
    return 0
