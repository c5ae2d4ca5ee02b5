"""Cost of the kubehunt-events ingest pipeline on the real node: bulk-index the real audit samples
(x40, ~5000 documents) into indices with the event mapping and final_pipeline none / set only /
script without flattened copies / the full pipeline; prints each median time as a ratio to none.

    PYTHONPATH=. KUBEHUNT_ES_URL=... .venv/bin/python scripts/bench_ingest_pipeline.py
"""
import os
import time, orjson, copy
from elasticsearch import Elasticsearch
from pipeline.setup import install_templates
from transforms.ecs import Normaliser
from tests.conftest import shared
es=Elasticsearch(os.environ.get("KUBEHUNT_ES_URL", "http://127.0.0.1:9200"), request_timeout=120); install_templates(es)
N=Normaliser()
lines=[l for p in sorted(shared("audit").rglob("*")) if p.is_file() for l in p.read_bytes().splitlines() if l.strip()]
from transforms.parse import records
base=[]
for l in lines:
    try:
        for r,e in records("audit", l): base.append(N.to_ecs("audit", r, e))
    except Exception: pass
docs=[]
for i in range(40):
    for d in base:
        d2=copy.deepcopy(d); d2["event"]["id"]=f'{d["event"]["id"]}-{i}'; docs.append(d2)
sim=es.indices.simulate_index_template(name="logs-kubernetes.audit_logs-bench")["template"]
mappings=sim["mappings"]
import json
pb=json.load(open("mappings/pipelines/kubehunt-events.json"))
es.ingest.put_pipeline(id="kh-bench-min", processors=[pb["processors"][0]])
noflat=json.loads(json.dumps(pb["processors"][1]))
for o in noflat["script"]["params"]["objects"]: o["flat"]=None
es.ingest.put_pipeline(id="kh-bench-noflat", processors=[pb["processors"][0], noflat])
res={"pipe":[], "nopipe":[], "min":[], "noflat":[]}
for rnd in range(3):
    for kind in ("nopipe","min","noflat","pipe"):
        idx=f"h6-bench-{kind}"
        es.options(ignore_status=404).indices.delete(index=idx)
        settings={"number_of_replicas":0}
        settings["final_pipeline"]={"pipe":"kubehunt-events","min":"kh-bench-min","noflat":"kh-bench-noflat","nopipe":"_none"}[kind]
        es.indices.create(index=idx, settings=settings, mappings=mappings)
        t=time.perf_counter()
        step=2000
        for j in range(0,len(docs),step):
            part=b"".join(orjson.dumps({"create":{"_index":idx,"_id":d["event"]["id"]}})+b"\n"+orjson.dumps(d)+b"\n" for d in docs[j:j+step])
            r=es.bulk(operations=part)
        res[kind].append(time.perf_counter()-t)
        es.indices.delete(index=idx)
print(len(docs), {k: round(sorted(v)[1]/sorted(res["nopipe"])[1],2) for k,v in res.items()}, {k:[round(x,2) for x in v] for k,v in res.items()}, "ratio(median)", round(sorted(res["pipe"])[1]/sorted(res["nopipe"])[1],2))
for p in ("kh-bench-min", "kh-bench-noflat"):
    es.ingest.delete_pipeline(id=p)
