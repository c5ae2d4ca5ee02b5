"""Command-line options of `kubehunt run` and the frozen, picklable configuration built from them.

kubehunt's own flags are parsed here; anything else must be a standard Beam pipeline option
(`--runner`, `--direct_num_workers`, ...) and is passed through. An unknown flag fails fast instead
of being silently dropped by Beam.
"""
from __future__ import annotations

import argparse
import os
from dataclasses import dataclass, field
from datetime import timedelta

from apache_beam.options.pipeline_options import PipelineOptions

from transforms.elasticsearch import DEFAULT_INDICES, EsSettings
from transforms.hunts import HuntSettings
from transforms.process import ProcessSettings
from transforms.read import DEFAULT_CHUNK_LINES, DEFAULT_MAX_LINE_BYTES, expand_patterns
from transforms.sources import ALL as SOURCE_REGISTRY
from transforms.split import DEFAULT_SPLIT_BYTES


class ConfigError(ValueError):
    """A configuration that cannot work; the message says what to fix."""


@dataclass(frozen=True)
class RunConfig:
    # One field of input paths per source of transforms/sources.py (named as the source).
    audit: tuple[str, ...] = ()
    falco: tuple[str, ...] = ()
    pods: str | None = None
    output_dir: str | None = None
    es: EsSettings = field(default_factory=EsSettings)
    process: ProcessSettings = field(default_factory=ProcessSettings)
    chunk_lines: int = DEFAULT_CHUNK_LINES
    spread_chunks: bool = False
    split_bytes: int = DEFAULT_SPLIT_BYTES
    max_line_bytes: int = DEFAULT_MAX_LINE_BYTES
    correlation_window: timedelta = timedelta(minutes=30)
    allowed_lateness: timedelta = timedelta(minutes=10)
    assume_default_sa: bool = False
    setup_destinations: bool = True
    summary_json: str | None = None

    def inputs(self) -> tuple[tuple[str, tuple[str, ...]], ...]:
        """(source name, input paths) of every source, in the registry's order."""
        return tuple((src.name, getattr(self, src.name)) for src in SOURCE_REGISTRY)


def _duration(text: str) -> timedelta:
    """`30m`, `90s`, `2h`, `1500ms` or plain seconds."""
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    for suffix in ("ms", "s", "m", "h"):
        if text.endswith(suffix) and text[: -len(suffix)].replace(".", "", 1).isdigit():
            return timedelta(seconds=float(text[: -len(suffix)]) * units[suffix])
    if text.replace(".", "", 1).isdigit():
        return timedelta(seconds=float(text))
    raise argparse.ArgumentTypeError(f"{text!r} is not a duration (examples: 30m, 90s, 2h, 1500ms)")


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text} must be a positive integer")
    return value


def _csv(text: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in text.split(",") if item.strip())


def add_es_arguments(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("Elasticsearch connection (secrets only from the environment or files)")
    g.add_argument("--es-url", action="append", metavar="URL",
                   help="Elasticsearch URL; repeat for several hosts (default: $KUBEHUNT_ES_URL, "
                        "else http://127.0.0.1:9200)")
    g.add_argument("--es-username", metavar="USER", help="basic-auth user; the password comes from "
                   "$KUBEHUNT_ES_PASSWORD or --es-password-file")
    g.add_argument("--es-password-file", metavar="FILE", help="file holding the basic-auth password")
    g.add_argument("--es-api-key-file", metavar="FILE",
                   help="file holding an API key (base64 id:key); default: $KUBEHUNT_ES_API_KEY")
    g.add_argument("--es-bearer-token-file", metavar="FILE",
                   help="file holding a bearer token; default: $KUBEHUNT_ES_BEARER_TOKEN")
    g.add_argument("--es-ca-certs", metavar="FILE", help="CA bundle (PEM) to verify the server")
    g.add_argument("--es-client-cert", metavar="FILE", help="client certificate (PEM) for mutual TLS")
    g.add_argument("--es-client-key", metavar="FILE", help="client key (PEM) for mutual TLS")
    g.add_argument("--es-verify-certs", action=argparse.BooleanOptionalAction, default=True,
                   help="verify the server's TLS certificate (default: on)")
    g.add_argument("--es-timeout", type=float, default=60.0, metavar="SECONDS", help="per-request timeout")
    g.add_argument("--es-batch-docs", type=_positive_int, default=1000, metavar="N",
                   help="documents per bulk request (default 1000)")
    g.add_argument("--es-batch-bytes", type=_positive_int, default=5 * 1024 * 1024, metavar="BYTES",
                   help="bytes per bulk request (default 5 MiB)")
    g.add_argument("--es-concurrency", type=_positive_int, default=2, metavar="N",
                   help="bulk requests in flight per worker (default 2)")
    g.add_argument("--es-retry-deadline", type=_duration, default=timedelta(minutes=5), metavar="DURATION",
                   help="keep retrying 429/5xx/unreachable for this long before failing the bundle (default 5m)")
    for src in SOURCE_REGISTRY:
        g.add_argument(src.index_option, default=DEFAULT_INDICES[src.name], metavar="NAME",
                       help=f"destination of {src.what} (default {DEFAULT_INDICES[src.name]})")
    g.add_argument("--incidents-index", default=DEFAULT_INDICES["incidents"], metavar="NAME",
                   help=f"destination of incidents (default {DEFAULT_INDICES['incidents']})")
    g.add_argument("--dead-letter-index", default=DEFAULT_INDICES["dead_letters"], metavar="NAME",
                   help=f"destination of dead letters (default {DEFAULT_INDICES['dead_letters']})")


_SECRET_FILES = ("es_password_file", "es_api_key_file", "es_bearer_token_file")


def es_settings_from_args(args: argparse.Namespace) -> EsSettings:
    from pipeline.summary import redact_url

    hosts = tuple(args.es_url or [os.environ.get("KUBEHUNT_ES_URL") or "http://127.0.0.1:9200"])
    for host in hosts:
        if not host.startswith(("http://", "https://")):
            # Not the value itself: a mistyped flag may have put a secret here.
            raise ConfigError("--es-url (or $KUBEHUNT_ES_URL): a URL must start with "
                              "http:// or https://")
        if "@" in host.split("//", 1)[1].split("/", 1)[0]:
            raise ConfigError("--es-url must not carry credentials (they would show in process listings); "
                              "use --es-username with $KUBEHUNT_ES_PASSWORD, or an API key file")
        if "?" in host or "#" in host:
            # The client drops a query string, so `?api_key=...` would not even authenticate.
            raise ConfigError(f"--es-url {redact_url(host)}: must not carry a query string or fragment "
                              "(the client ignores them; credentials go in $KUBEHUNT_ES_API_KEY or a --es-*-file)")
    for name in ("es_password_file", "es_api_key_file", "es_bearer_token_file", "es_ca_certs",
                 "es_client_cert", "es_client_key"):
        value = getattr(args, name)
        if value and not os.path.isfile(value):
            if name in _SECRET_FILES:
                # Neither the path nor the value: `--es-password-file S3cr3t` is a secret given by mistake.
                raise ConfigError(f"--{name.replace('_', '-')}: no such file (the value is not shown: it may be "
                                  "a secret given in place of a path)")
            raise ConfigError(f"--{name.replace('_', '-')} {value}: no such file")
    return EsSettings(
        hosts=hosts, username=args.es_username, password_file=args.es_password_file,
        api_key_file=args.es_api_key_file, bearer_token_file=args.es_bearer_token_file,
        ca_certs=args.es_ca_certs, client_cert=args.es_client_cert, client_key=args.es_client_key,
        verify_certs=args.es_verify_certs, request_timeout=args.es_timeout,
        batch_docs=args.es_batch_docs, batch_bytes=args.es_batch_bytes, concurrency=args.es_concurrency,
        retry_deadline=args.es_retry_deadline.total_seconds(),
        indices=(*((src.name, getattr(args, f"{src.name}_index")) for src in SOURCE_REGISTRY),
                 ("incidents", args.incidents_index), ("dead_letters", args.dead_letter_index)),
    )


def insecure_warning(settings: EsSettings) -> str | None:
    """The warning `--no-es-verify-certs` deserves, or None. The driver logs it once (the client's own
    per-request warning is off: it would repeat on every bulk request of every worker)."""
    if settings.verify_certs or not any(h.startswith("https") for h in settings.hosts):
        return None
    sends = [what for what, present in (
        ("an API key", settings.api_key_file or os.environ.get(settings.api_key_env)),
        ("a bearer token", settings.bearer_token_file or os.environ.get(settings.bearer_token_env)),
        ("a password", settings.username)) if present]
    return ("--no-es-verify-certs: the server's TLS certificate is NOT verified, so anyone in the path can "
            "pose as Elasticsearch" + (f" and receive {sends[0]} (sent with every request)" if sends else "")
            + "; prefer --es-ca-certs FILE")


class _HuntList(argparse.Action):
    """`--hunt-list NAME=a,b` (repeatable), and the older one-option-per-list spellings as aliases:
    both append (name, values) to `hunt_lists`; the last value given for a name wins."""

    def __init__(self, option_strings, dest, list_name: str | None = None, **kwargs):
        self.list_name = list_name
        super().__init__(option_strings, "hunt_lists", **kwargs)

    def __call__(self, parser, namespace, value, option_string=None):
        if self.list_name is None:
            name, sep, items = value.partition("=")
            if not sep or not name.strip():
                raise argparse.ArgumentError(self, f"{value!r} is not NAME=a,b (example: "
                                                   "--hunt-list known_memfd_users=java,node)")
            name = name.strip()
        else:
            name, items = self.list_name, value
        current = list(getattr(namespace, "hunt_lists", None) or [])
        current.append((name, _csv(items)))
        setattr(namespace, "hunt_lists", current)


# The per-list options kubehunt had before --hunt-list; kept working as aliases.
HUNT_LIST_ALIASES = {"--secret-reader-exclusions": "secret_reader_exclusions",
                     "--known-memfd-users": "known_memfd_users",
                     "--known-debugger-procs": "known_debugger_procs"}


def add_hunt_arguments(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("hunts")
    g.add_argument("--hunts-dir", metavar="DIR", help="folder of hunt files (default: the shipped mappings/hunts)")
    g.add_argument("--hunt-list", action=_HuntList, metavar="NAME=A,B", default=None,
                   help="set a tunable list a hunt uses (`setting('NAME')` in its match; `kubehunt hunts "
                        "list` shows them with their defaults); repeatable. Lists shipped: "
                        "secret_reader_exclusions, known_memfd_users, known_debugger_procs")
    for option, name in HUNT_LIST_ALIASES.items():
        g.add_argument(option, action=_HuntList, list_name=name, metavar="A,B",
                       help=f"same as --hunt-list {name}=A,B")


def hunt_settings_from_args(args: argparse.Namespace) -> HuntSettings:
    """The hunt settings; an unknown list name or hunts folder is a configuration error (exit 2)."""
    from transforms.hunts import HuntError, load_hunts, resolve_lists

    hunts_dir = getattr(args, "hunts_dir", None)
    settings = HuntSettings(hunts_dir=hunts_dir, lists=dict(getattr(args, "hunt_lists", None) or ()))
    try:
        resolve_lists(load_hunts(settings), settings)
    except HuntError as err:
        text = str(err)
        raise ConfigError(f"--hunt-list: {text}" if text.startswith("unknown hunt list")
                          else f"--hunts-dir: {text}") from None
    return settings


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("inputs")
    for src in SOURCE_REGISTRY:
        g.add_argument(f"--{src.name}", nargs="+", action="extend", default=[], metavar="PATH",
                       help=src.input_help)
    g.add_argument("--pods", metavar="FILE", help="pod inventory from `kubectl get pods -A -o json`, to resolve "
                   "pod -> service account")
    g.add_argument("--chunk-lines", type=_positive_int, default=DEFAULT_CHUNK_LINES, metavar="N",
                   help=f"lines per work item (default {DEFAULT_CHUNK_LINES})")
    g.add_argument("--spread-chunks", action="store_true",
                   help="also spread the chunks of each file across workers (a shuffle): for a few huge "
                        "uncompressed files on a distributed runner; off by default so a local run streams "
                        "its input in bounded memory")
    g.add_argument("--split-bytes", type=_positive_int, default=DEFAULT_SPLIT_BYTES, metavar="BYTES",
                   help="uncompressed files larger than this are read in line-aligned byte ranges of about "
                        f"this size, so several workers share one file (default {DEFAULT_SPLIT_BYTES // 2**20} MiB)")
    g.add_argument("--max-line-bytes", type=_positive_int, default=DEFAULT_MAX_LINE_BYTES, metavar="BYTES",
                   help="longer lines are dead-lettered (default 8 MiB)")
    o = parser.add_argument_group("outputs")
    o.add_argument("--output-dir", metavar="DIR", help="write NDJSON files (events*, incidents*, dead-letters*) "
                   "instead of indexing into Elasticsearch")
    o.add_argument("--keep-original", action="store_true",
                   help="also store each input line as text in event.original (as Elastic's "
                        "preserve_original_event; off by default: it doubles the stored size)")
    o.add_argument("--summary-json", metavar="FILE", help="also write the run summary as JSON")
    o.add_argument("--no-setup", dest="setup_destinations", action="store_false",
                   help="do not install index templates before writing (they must already exist)")
    from pipeline.backfill import add_exit_arguments
    add_exit_arguments(o)
    c = parser.add_argument_group("correlation")
    c.add_argument("--correlation-window", type=_duration, default=timedelta(minutes=30), metavar="DURATION",
                   help="how long after a Falco alert the pod's service-account activity counts (default 30m)")
    c.add_argument("--allowed-lateness", type=_duration, default=timedelta(minutes=10), metavar="DURATION",
                   help="streaming: how late an event may arrive and still join (default 10m)")
    c.add_argument("--assume-default-sa", action="store_true",
                   help="an alert whose pod cannot be resolved is attributed to NS:default")
    c.add_argument("--no-correlation", dest="correlate", action="store_false", help="skip the join")
    add_hunt_arguments(parser)
    add_es_arguments(parser)


def config_from_args(args: argparse.Namespace) -> RunConfig:
    if not any(getattr(args, src.name) for src in SOURCE_REGISTRY):
        raise ConfigError("nothing to read: give "
                          + " and/or ".join(f"--{src.name} PATH..." for src in SOURCE_REGISTRY))
    if args.pods:
        from transforms.correlate import InventoryError, inventory_service_accounts
        if not os.path.isfile(args.pods):
            raise ConfigError(f"--pods {args.pods}: no such file")
        try:
            inventory_service_accounts(args.pods)  # validate now; the pipeline reads it on a worker
        except InventoryError as err:
            raise ConfigError(f"--pods {err}") from None
    if args.correlation_window <= timedelta(0):
        raise ConfigError("--correlation-window must be positive")
    return RunConfig(
        **{src.name: tuple(expand_patterns(getattr(args, src.name))) for src in SOURCE_REGISTRY},
        pods=args.pods, output_dir=args.output_dir,
        es=es_settings_from_args(args),
        process=ProcessSettings(hunts=hunt_settings_from_args(args), correlate=args.correlate,
                                correlation_window_ms=int(args.correlation_window.total_seconds() * 1000),
                                keep_original=args.keep_original),
        chunk_lines=args.chunk_lines, spread_chunks=args.spread_chunks, split_bytes=args.split_bytes,
        max_line_bytes=args.max_line_bytes,
        correlation_window=args.correlation_window, allowed_lateness=args.allowed_lateness,
        assume_default_sa=args.assume_default_sa, setup_destinations=args.setup_destinations,
        summary_json=args.summary_json,
    )


def _beam_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    seen: set[type] = set()
    stack = [PipelineOptions]
    while stack:
        cls = stack.pop()
        for sub in cls.__subclasses__():
            if sub not in seen:
                seen.add(sub)
                stack.append(sub)
    for cls in seen:
        try:
            cls._add_argparse_args(parser)
        except argparse.ArgumentError:
            pass  # options registered by two classes
    return parser


def flag_names(tokens: list[str]) -> list[str]:
    """The flags among command-line tokens, without values (`--x=secret` -> `--x`): safe to print."""
    return [t.split("=", 1)[0] for t in tokens if t.startswith("-")]


def beam_options(extra: list[str]) -> PipelineOptions:
    """The pass-through Beam options; an unknown flag is a configuration error, not a warning."""
    _, unknown = _beam_parser().parse_known_args(extra)
    unknown = flag_names(unknown)
    if unknown:
        raise ConfigError(f"unknown option(s): {' '.join(unknown)} (see `kubehunt run --help`; "
                          "Beam pipeline options such as --runner are passed through)")
    options = PipelineOptions(extra)
    return options
