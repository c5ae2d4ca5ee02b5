"""`kubehunt sigma convert RULE.yml [--target lucene|eql|esql]`: a SigmaHQ Kubernetes audit rule as a query
on kubehunt's data streams (transforms/sigma_pipeline.py), printed one query per line."""
from __future__ import annotations

import sys


def add_parser(sub) -> None:
    sigma = sub.add_parser("sigma", help="Sigma rules on kubehunt's data streams")
    actions = sigma.add_subparsers(dest="sigma_command", required=True, metavar="ACTION")
    convert = actions.add_parser("convert", help="convert a Sigma rule (pySigma's Elasticsearch backend with "
                                                 "kubehunt's processing pipeline)")
    convert.add_argument("rule", metavar="RULE.yml", help="a Sigma rule file (`-` reads stdin)")
    convert.add_argument("--target", choices=("lucene", "eql", "esql"), default="lucene",
                         help="query language (default lucene: Kibana's Lucene / query_string); the "
                              "ES|QL backend writes `metadata` without brackets, which needs Elasticsearch 8.13+")


def cmd_sigma(args) -> int:
    from pipeline.options import ConfigError
    from transforms.sigma_pipeline import SigmaError, convert

    try:
        text = sys.stdin.read() if args.rule == "-" else open(args.rule, encoding="utf-8").read()
    except OSError as err:
        raise ConfigError(f"RULE.yml {args.rule}: {err.strerror}") from None
    try:
        queries = convert(text, args.target)
    except SigmaError as err:
        raise ConfigError(f"RULE.yml {args.rule}: {err}") from None
    for query in queries:
        print(query)
    return 0
