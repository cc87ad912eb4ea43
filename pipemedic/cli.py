"""``pipemedic`` command line: demo, worker, rules, report, topics, send, approve, simulator.

A failure an operator can fix (a missing or malformed file, a bad setting, a broker or
ClickHouse that does not answer) is told in one line on stderr and exits 1; the exception types
that count as such are one table, :func:`pipemedic.failures.expected_failures`. Anything else
is a bug and keeps its traceback. ``--debug`` shows the traceback and the libraries' log
messages every time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import socket
import sys
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from pipemedic.failures import AlertsFileError, BrokerAddressError, BrokerUnreachable, explain

EXIT_FAILURE = 1  # a runtime failure; usage errors exit 2 (argparse's own)
EXIT_INTERRUPTED = 130
# a TCP connect to the broker before aiokafka tries: nothing listening fails in this time,
# in one line, instead of aiokafka's logged retries and 40 s request timeout
BROKER_CONNECT_TIMEOUT_S = 5.0
# the whole exchange (send, approve, topics); without it, a listener that is not Kafka or a
# broker advertising an address we cannot reach would hold the command for aiokafka's timeouts
BROKER_EXCHANGE_TIMEOUT_S = 60.0

EXIT_CODES = """\
exit codes:
  0    done
  1    runtime failure, told in one line on stderr: a missing or malformed file (alerts,
       rules, estate, world), a bad PIPEMEDIC_* setting, the broker or ClickHouse not
       answering, a demo that did not settle in time (--debug shows the traceback)
  2    usage error: unknown command, missing or bad argument
  130  interrupted
"""

# wide enough for the report when piped (rich assumes 80 columns without a terminal)
console = Console(stderr=False, width=None if sys.stdout.isatty() else 140)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pipemedic",
        description="Auto-remediation for Azure Data Factory and Databricks failures.",
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    debug_help = "on failure show the traceback, and show the libraries' log messages"
    parser.add_argument("--debug", action="store_true", help=debug_help)
    # also accepted after the command; SUPPRESS keeps a missing one from undoing the global one
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=debug_help)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", title="commands")

    def command(name: str, help: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=help, description=help, parents=[common])

    as_json = "print JSON instead of a table"
    demo = command("demo", "run the whole pipeline on the embedded stack, then the report")
    demo.add_argument("--alerts", type=Path, help="JSONL file, one raw alert per line")
    demo.add_argument("--world", type=Path, help="platform simulator world file (YAML or JSON)")
    demo.add_argument("--json", action="store_true", help=as_json + " (per chain too)")
    demo.add_argument(
        "--timeout", type=float, default=300.0, help="give up after this many seconds (300)"
    )
    demo.add_argument("--keep", action="store_true", help="keep the run's data folder")

    command("worker", "run a worker; settings come from PIPEMEDIC_* variables")

    rules = command("rules", "print the classification rule table (first match wins)")
    rules.add_argument("--file", type=Path, help="rules file with overrides and additions")
    rules.add_argument("--json", action="store_true", help=as_json)

    policy = command(
        "policy", "print the rollout table (mode by scope), or explain what an alert would get"
    )
    policy.add_argument(
        "explain", nargs="?", choices=["explain"], help="explain ALERT instead of the table"
    )
    policy.add_argument("alert", nargs="?", type=Path, help="a raw alert payload (JSON)")
    policy.add_argument("--rules", type=Path, help="rules file ($PIPEMEDIC_RULES_FILE)")
    policy.add_argument("--estate", type=Path, help="estate file ($PIPEMEDIC_ESTATE_FILE)")
    policy.add_argument("--json", action="store_true", help=as_json)

    report = command("report", "print the remediation report from ClickHouse")
    report.add_argument("--json", action="store_true", help=as_json)

    topics = command(
        "topics",
        "create every planned topic and check the existing ones (create, the default), "
        "or print the plan",
    )
    topics.add_argument(
        "action",
        nargs="?",
        choices=["create", "plan"],
        default="create",
        help="create: create what is missing, check what exists (the default); plan: print it",
    )
    topics.add_argument("--list", action="store_true", help="only print the planned topics")
    topics.add_argument(
        "--format",
        choices=["table", "json", "az-cli", "bicep", "kafka"],
        default="table",
        help="plan: a table, JSON, az CLI or Bicep for Event Hubs, kafka-topics.sh commands",
    )
    topics.add_argument(
        "--profile",
        choices=["default", "compact"],
        default=None,
        help="the topic profile (PIPEMEDIC_TOPIC_PROFILE, else default); compact fits Event "
        "Hubs Standard's 10 event hubs",
    )
    topics.add_argument(
        "--tier",
        choices=["standard", "premium", "dedicated"],
        default="standard",
        help="plan: the Event Hubs tier to check the plan against (standard)",
    )

    send = command("send", "send a JSONL file of raw alerts to the raw topic")
    send.add_argument("file", type=Path, help="one alert per line; ${now-5m} becomes a time")

    approve = command("approve", "approve (or --reject) the action a chain waits on")
    approve.add_argument("chain_id", help="the chain, as in the awaiting_approval row")
    approve.add_argument("--reject", action="store_true", help="refuse the action instead")
    approve.add_argument(
        "--by", default=os.environ.get("USER", "someone"), help="who decides ($USER)"
    )
    approve.add_argument("--reason", default="", help="why, recorded with the decision")
    for name, doing in (("pause", "stop new actions"), ("resume", "let actions go again")):
        switch = command(name, f"kill switch: {doing} on a scope, on every worker")
        switch.add_argument(
            "--scope",
            default="*",
            help="* (everything, the default) or factory names / workspace ids, shell pattern",
        )
        switch.add_argument("--reason", default="", help="why, recorded with it")
        switch.add_argument(
            "--by", default=os.environ.get("USER", "someone"), help="who does it ($USER)"
        )
    waiting = command("approvals", "list the chains waiting for a decision (approval mode)")
    waiting.add_argument("--json", action="store_true", help=as_json)

    add_transfer_commands(command, as_json)

    sim = command("simulator", "serve the ADF/Databricks/Azure AD simulator on loopback")
    sim.add_argument("--world", type=Path, required=True, help="world file (YAML or JSON)")
    sim.add_argument("--port", type=int, default=0, help="port to listen on (0: a free one)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)  # usage errors exit 2 here
    if args.command != "worker":  # a worker logs the Faust way
        _library_logging(args.debug)
    try:
        return COMMANDS[args.command](args)
    except KeyboardInterrupt:
        print("pipemedic: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:
        message = explain(exc)
        if message is None or args.debug:
            raise
        print(f"pipemedic: error: {message}", file=sys.stderr)
        return EXIT_FAILURE


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("pipemedic")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown"


def _library_logging(debug: bool) -> None:
    """One-shot commands speak for themselves: a library's log lines (aiokafka's refused
    connections, an unclosed client after a failed start) repeat the failure the command
    reports, so they show only with --debug."""
    handler = logging.StreamHandler()
    # on the handler: some libraries set their own logger's level (urllib3 under ClickHouse)
    handler.setLevel(logging.INFO if debug else logging.CRITICAL)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=logging.INFO if debug else logging.CRITICAL, handlers=[handler])


def _settings() -> Any:
    from streams.settings import Settings

    return Settings()


def alert_lines(path: Path, now: float) -> list[bytes]:
    """An alerts file's messages, placeholders filled in; a line that is not JSON stops it here
    rather than as a dead letter later."""
    from pipemedic.stack import relative_times

    lines = []
    for number, line in enumerate(Path(path).read_text().splitlines(), start=1):
        if not line.strip():
            continue
        payload = relative_times(line.encode(), now)
        try:
            json.loads(payload)
        except json.JSONDecodeError as exc:
            where = f"{path}:{number}:{exc.colno}"
            raise AlertsFileError(f"{where}: not JSON ({exc.msg})") from exc
        lines.append(payload)
    return lines


def on_broker(
    settings: Any,
    exchange: Callable[[Any], Coroutine[Any, Any, Any]],
    timeout_s: float | None = 0.0,
) -> Any:
    """Run ``exchange(client_options)`` against the configured broker (the worker's bootstrap
    servers and SASL/TLS, :mod:`pipemedic.kafka`), failing in bounded time (``timeout_s``;
    0: the default exchange bound, None: unbounded, for long transfers like capture)."""
    from aiokafka.errors import KafkaConnectionError

    url = settings.broker_url
    client = require_listening(settings)
    bound = BROKER_EXCHANGE_TIMEOUT_S if timeout_s == 0.0 else timeout_s

    async def bounded() -> Any:
        return await asyncio.wait_for(exchange(client), bound)

    try:
        return asyncio.run(bounded())
    except TimeoutError:
        raise BrokerUnreachable(
            f"the broker at {url} did not finish within {bound:.0f} s"
        ) from None
    except KafkaConnectionError as exc:  # something listens there, but not a Kafka broker
        raise BrokerUnreachable(f"no Kafka broker answers at {url}") from exc


def require_listening(settings: Any) -> Any:
    """The broker's client options, once some bootstrap server accepts a TCP connection
    (:class:`BrokerUnreachable` otherwise)."""
    from pipemedic.kafka import client_options

    url = settings.broker_url
    try:
        client = client_options(settings)
    except ValueError as exc:  # Faust's URL parsing: a port that is not a number
        raise BrokerAddressError(f"bad PIPEMEDIC_BROKER_URL {url!r}: {exc}") from exc
    problem: OSError | None = None
    for server in client.bootstrap_servers:
        host, _, port = server.rpartition(":")
        try:
            with socket.create_connection((host.strip("[]"), int(port)), BROKER_CONNECT_TIMEOUT_S):
                return client
        except OSError as exc:
            problem = exc
    reason = getattr(problem, "strerror", None) or str(problem)
    raise BrokerUnreachable(f"no broker answers at {url} ({reason}); see PIPEMEDIC_BROKER_URL")


def cmd_demo(args: argparse.Namespace) -> int:
    from pipemedic.demo import run_demo

    if args.alerts is not None:
        alert_lines(args.alerts, time.time())  # a bad file fails before any process starts
    result = run_demo(
        alerts=args.alerts,
        world=args.world,
        timeout_s=args.timeout,
        keep=args.keep,
        progress=not args.json,
    )
    if args.json:
        print(json.dumps(result.as_json(), indent=2, sort_keys=True))
    else:
        print_report(
            result.by_error_type, result.kpis, title=f"pipemedic demo — {result.summary()}"
        )
    return 0 if result.complete else EXIT_FAILURE


def cmd_worker(args: argparse.Namespace) -> int:
    from pipemedic.worker import load_rulebook, run_worker
    from streams.estate import load_estate

    settings = _settings()
    # mistakes in the files first, then the broker: each one line here, where Faust would
    # log a traceback and stop
    load_rulebook(settings.rules_file)
    load_estate(settings.estate_file)
    require_listening(settings)
    run_worker(settings)
    return 0


def cmd_rules(args: argparse.Namespace) -> int:
    from streams.policy import rules

    # not pipemedic.worker's load_rulebook: importing the worker (Faust, every agent) would
    # take most of this command's time
    rulebook = (rules.DEFAULT_RULES, rules.DEFAULT_SCHEDULES)
    rows = rules.rules_table_rows(*(rules.load_rules(args.file) if args.file else rulebook))
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    # the note and schedule name are in --json; the table keeps what a reader scans for
    shown = [{k: v for k, v in row.items() if k not in ("note", "schedule")} for row in rows]
    print_rows("pipemedic rules (first match wins)", shown)
    return 0


def limit_rows(caps: Any, storms: Any, budget_usd: float) -> list[dict[str, Any]]:
    """The caps, storm rules and daily budget, for ``pipemedic policy``."""
    rows = [{"limit": "cap", "name": c.name, "rule": c.describe(), "then": c.then} for c in caps]
    rows += [
        {"limit": "storm", "name": s.name, "rule": s.describe(), "then": "hold, probe, release"}
        for s in storms
    ]
    budget = f"${budget_usd:.2f} of estimated cost a UTC day" if budget_usd > 0 else "none"
    rows.append({"limit": "budget", "name": "", "rule": budget, "then": "hand to people"})
    return rows


def cmd_policy(args: argparse.Namespace) -> int:
    from streams.estate import load_estate
    from streams.policy import rules
    from streams.policy.explain import explain as explain_alert
    from streams.policy.rollout import Rollout
    from streams.policy.scope import EstateScope

    settings = _settings()
    rules_file = args.rules or settings.rules_file
    estate_file = args.estate or settings.estate_file
    estate = load_estate(estate_file)
    rollout = Rollout(
        rows=rules.load_rollout(rules_file), default_mode=settings.mode, target_tags=estate.tags
    )
    if not args.explain:
        rows = rollout.table_rows()
        limits = limit_rows(*rules.load_limits(rules_file), settings.daily_cost_cap_usd)
        if args.json:
            print(json.dumps({"rollout": rows, "limits": limits}, indent=2))
        else:
            print_rows("pipemedic policy (first match wins)", rows)
            print_rows("limits (admission: every worker, one partition)", limits)
        return 0
    if args.alert is None:
        raise AlertsFileError("policy explain needs an alert: pipemedic policy explain ALERT.json")
    rulebook = rules.load_rules(rules_file) if rules_file else None
    classifier = rules.Classifier(*rulebook) if rulebook else rules.Classifier()
    scope = EstateScope.of(estate.adf.factories, estate.databricks.workspaces)
    found, skipped = explain_alert(
        args.alert.read_bytes(),
        classify=classifier,
        rollout=rollout,
        scope=scope,
        now_ms=int(time.time() * 1000),
    )
    rows = [e.row() for e in found]
    if args.json:
        print(json.dumps({"alerts": rows, "skipped": list(skipped)}, indent=2))
        return 0
    if len(rows) > 3:  # a diagnostic batch: one line each
        print_rows(f"pipemedic policy explain {args.alert.name}", rows)
    for number, row in enumerate(rows if len(rows) <= 3 else [], 1):
        title = f"pipemedic policy explain {args.alert.name}" + (
            f" (alert {number} of {len(rows)})" if len(rows) > 1 else ""
        )
        print_rows(title, [{"": key, "would be": value} for key, value in row.items()])
    if skipped:
        print(f"{len(skipped)} record(s) need no action: {', '.join(sorted(set(skipped)))}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from pipemedic.reporting import read_report

    by_type, kpis, chains = read_report(_settings())
    if args.json:
        report = {"by_error_type": by_type, "kpis": kpis, "chains": chains}
        print(json.dumps(report, indent=2, default=str))
    else:
        print_report(by_type, kpis, title="pipemedic report")
    return 0


def cmd_topics(args: argparse.Namespace) -> int:
    from pipemedic import topic_plan
    from streams.policy.topic_plan import event_hubs_warnings, tier_named

    settings = _settings()
    if args.profile is not None:
        settings = settings.model_copy(update={"topic_profile": args.profile})
    specs = topic_plan.plan_for(settings)
    if args.list:
        print("\n".join(s.name for s in specs))
        return 0
    if args.action == "plan":
        tier, tombstones = tier_named(args.tier), settings.topic_retention_hours
        if args.format == "table":
            print_rows(
                f"pipemedic topic plan ({settings.topic_profile} profile)",
                topic_plan.table_rows(specs),
            )
            print(f"{len(specs)} topics")
            for warning in event_hubs_warnings(specs, tier):
                print(f"pipemedic: note: {warning}", file=sys.stderr)
        else:
            print(
                {
                    "json": lambda: topic_plan.as_json(specs, tier),
                    "az-cli": lambda: topic_plan.az_cli(specs, tier, tombstones),
                    "bicep": lambda: topic_plan.bicep(specs, tier, tombstones),
                    "kafka": lambda: topic_plan.kafka_topics_sh(specs),
                }[args.format](),
                end="",
            )
        return 0
    applied = on_broker(settings, lambda c: topic_plan.apply_plan(c, specs))
    for note in applied.notes:
        print(f"pipemedic: note: {note}", file=sys.stderr)
    for problem in applied.problems:
        print(f"pipemedic: error: {problem}", file=sys.stderr)
    print(
        f"{len(specs)} topics planned: {len(applied.created)} created, "
        f"{len(applied.as_planned)} already there as planned, "
        f"{len(applied.problems)} problem(s)"
    )
    return EXIT_FAILURE if applied.problems else 0


def cmd_send(args: argparse.Namespace) -> int:
    from pipemedic.runtime import produce_raw
    from streams.policy.routing import RAW, prefixed

    settings = _settings()
    lines = alert_lines(args.file, time.time())
    raw = prefixed(RAW, settings.topic_prefix)
    sent = on_broker(settings, lambda c: produce_raw(c, raw, lines))
    print(f"sent {sent} messages to {raw}")
    return 0


def cmd_approvals(args: argparse.Namespace) -> int:
    from pipemedic.approvals import waiting_now

    rows = [w.as_json() for w in waiting_now(_settings(), on_broker)]
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        print_rows("awaiting approval", rows)
    return 0


def cmd_approve(args: argparse.Namespace) -> int:
    from pipemedic.runtime import send_decision

    approve = not args.reject
    settings = _settings()
    on_broker(
        settings,
        lambda c: send_decision(
            c,
            args.chain_id,
            approve=approve,
            by=args.by,
            reason=args.reason,
            topic_prefix=settings.topic_prefix,
            profile=settings.topic_profile,
        ),
    )
    print(f"{'approved' if approve else 'rejected'}: {args.chain_id}")
    return 0


def cmd_pause(args: argparse.Namespace) -> int:
    from pipemedic.runtime import send_pause

    paused = args.command == "pause"
    settings = _settings()
    on_broker(
        settings,
        lambda c: send_pause(
            c,
            args.scope,
            paused=paused,
            by=args.by,
            reason=args.reason,
            topic_prefix=settings.topic_prefix,
        ),
    )
    scope = "everything" if args.scope == "*" else f"scope {args.scope}"
    if paused:
        print(f"paused: {scope} (new actions wait; pipemedic resume --scope '{args.scope}')")
    else:
        print(f"resumed: {scope} (a pause of a wider scope still holds)")
    return 0


def add_transfer_commands(command: Callable[[str, str], Any], as_json: str) -> None:
    """capture and replay (pipemedic/capture.py, pipemedic/replay.py)."""
    cap = command("capture", "record a topic (keys, values, headers, times) into a JSONL file")
    cap.add_argument("topic", help="the topic as the broker names it (prefix included)")
    cap.add_argument("--out", type=Path, required=True, help="JSONL file to write")
    start = cap.add_mutually_exclusive_group()
    start.add_argument("--from-beginning", action="store_true", help="from the oldest record")
    start.add_argument("--since", help="records at or after TIME (ISO-8601, epoch ms, or 2h, 7d)")
    cap.add_argument("--until", help="records at or before TIME (same forms)")
    cap.add_argument("--limit", type=int, help="stop after N records")
    cap.add_argument("--partition", type=int, help="only this partition")
    cap.add_argument("--json", action="store_true", help=as_json + " (and no progress bar)")

    rep = command("replay", "produce a capture back: keys, headers and order per partition kept")
    rep.add_argument("file", type=Path, help="a file written by pipemedic capture")
    rep.add_argument(
        "--to", help="target topic (default: the captured one; a redrive: each origin)"
    )
    pace = rep.add_mutually_exclusive_group()
    pace.add_argument("--rate", help="records per second, e.g. 200 or 200/s")
    pace.add_argument("--speed", help="the captured pace sped up, e.g. 10x")
    pace.add_argument("--max", action="store_true", help="as fast as the broker takes (default)")
    times = rep.add_mutually_exclusive_group()
    times.add_argument("--keep-times", action="store_true", help="the captured timestamps")
    times.add_argument(
        "--shift-times-to-now",
        action="store_true",
        help="move record and payload times so the capture ends now",
    )
    rep.add_argument("--loop", action="store_true", help="start over at the end, until stopped")
    rep.add_argument(
        "--no-mark", action="store_true", help="no pipemedic-replay header (exact copies)"
    )
    rep.add_argument("--json", action="store_true", help=as_json + " (and no progress bar)")

    wi = command("whatif", "run recorded alerts through the pipeline under two policies, compare")
    wi.add_argument("--alerts", type=Path, required=True, help="JSONL file, one raw alert per line")
    wi.add_argument("--rules", type=Path, help="policy A (default: shipped rules, demo schedules)")
    wi.add_argument("--against", type=Path, help="policy B: a rules patch applied on top of A")
    wi.add_argument(
        "--estate", type=Path, help="estate whose upstream map/fallbacks/playbooks apply"
    )
    wi.add_argument("--world", type=Path, help="simulator world (default: derived from the alerts)")
    wi.add_argument("--json", action="store_true", help=as_json)
    wi.add_argument("--html", type=Path, help="also write a self-contained page with charts")
    wi.add_argument("--timeout", type=float, default=300.0, help="per policy, in seconds (300)")
    wi.add_argument("--keep", action="store_true", help="keep the run's data folder")

    tn = command("tune", "propose rule changes from the outcome history in ClickHouse")
    tn.add_argument("--since", default="30d", help="history since an age or time (30d)")
    tn.add_argument(
        "--out", type=Path, default=Path("rules-patch.yaml"), help="patch file (rules-patch.yaml)"
    )
    tn.add_argument("--json", action="store_true", help=as_json)


def cmd_capture(args: argparse.Namespace) -> int:
    from pipemedic.capture import CaptureRequest, capture, parse_time
    from pipemedic.progress import progress_bar

    now = int(time.time() * 1000)
    request = CaptureRequest(
        topic=args.topic,
        from_beginning=args.from_beginning,
        since_ms=parse_time(args.since, now) if args.since else None,
        until_ms=parse_time(args.until, now) if args.until else None,
        limit=args.limit,
        partition=args.partition,
    )
    settings = _settings()
    bar = progress_bar(f"capture {args.topic}", enabled=not args.json)
    with bar as report, args.out.open("wb") as out:
        result = on_broker(settings, lambda c: capture(c, request, out, progress=report), None)
    summary = result.as_json(args.out)
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(
            f"captured {result.records} records of {args.topic} into {args.out} "
            f"(capture {result.meta.capture_id}, {summary['records_per_s']:.0f} records/s)"
        )
    return 0


def cmd_replay(args: argparse.Namespace) -> int:
    from pipemedic.capture import CaptureError, read_capture
    from pipemedic.progress import progress_bar
    from pipemedic.replay import ReplayRequest, replay

    meta, records = read_capture(args.file)
    try:
        rate = float(args.rate.removesuffix("/s")) if args.rate else None
        speed = float(args.speed.removesuffix("x")) if args.speed else None
    except ValueError:
        raise CaptureError(f"not a number: --rate {args.rate} / --speed {args.speed}") from None
    request = ReplayRequest(
        to=args.to,
        rate=rate,
        speed=speed,
        times="keep" if args.keep_times else "shift" if args.shift_times_to_now else "broker",
        loop=args.loop,
        mark=not args.no_mark,
    )
    settings = _settings()
    with progress_bar(f"replay {args.file.name}", enabled=not args.json) as report:
        result = on_broker(
            settings, lambda c: replay(c, meta, records, request, progress=report), None
        )
    if args.json:
        print(json.dumps(result.as_json(), indent=2))
    else:
        where = ", ".join(f"{n} to {t}" for t, n in sorted(result.by_topic.items()))
        print(f"replayed {result.records} records ({where or 'none'}), capture {meta.capture_id}")
    return 0


def cmd_whatif(args: argparse.Namespace) -> int:
    from pipemedic.whatif import run_whatif
    from pipemedic.whatif_report import build_report, html_page

    # as recorded, bad lines included: both policies dead-letter them alike
    lines = [line.encode() for line in args.alerts.read_text().splitlines() if line.strip()]
    say = Console(stderr=True, quiet=args.json).print
    runs = run_whatif(
        lines,
        rules=args.rules,
        against=args.against,
        estate=args.estate,
        world=args.world,
        timeout_s=args.timeout,
        keep=args.keep,
        say=say,
    )
    report = build_report(runs, len(lines))
    if args.html:
        args.html.write_text(html_page(report), encoding="utf-8")
    if args.json:
        print(json.dumps(report, indent=2, default=str))
    else:
        title = " vs ".join(f"{r.label}: {r.rules}" for r in runs)
        print_rows(f"pipemedic whatif — {len(lines)} alerts — {title}", report["table"])
        changed = report["differences"]
        print(f"differences: {', '.join(changed) if changed else 'none'}")
    return 0 if all(r.settled for r in runs) else EXIT_FAILURE


def cmd_tune(args: argparse.Namespace) -> int:
    from pipemedic.capture import parse_time
    from pipemedic.tune import tune, write_patch
    from streams.policy.tuning import rules_patch

    proposals = tune(_settings(), parse_time(args.since, int(time.time() * 1000)))
    write_patch(args.out, proposals, since=args.since)
    if args.json:
        found = {
            "proposals": [p.to_dict() for p in proposals],
            "patch_file": str(args.out),
            "patch": rules_patch(proposals),
        }
        print(json.dumps(found, indent=2, default=str))
        return 0
    rows = [{"kind": p.kind, "about": p.subject, "proposal": p.summary} for p in proposals]
    print_rows(f"pipemedic tune --since {args.since}", rows)
    print(f"rules patch: {args.out} (try it: pipemedic whatif --alerts FILE --against {args.out})")
    return 0


def cmd_simulator(args: argparse.Namespace) -> int:
    from pipemedic.simulator.__main__ import main as simulator_main

    simulator_main(["--world", str(args.world), "--port", str(args.port)])
    return 0


COMMANDS = {
    "demo": cmd_demo,
    "worker": cmd_worker,
    "rules": cmd_rules,
    "policy": cmd_policy,
    "report": cmd_report,
    "topics": cmd_topics,
    "send": cmd_send,
    "approve": cmd_approve,
    "pause": cmd_pause,
    "resume": cmd_pause,
    "approvals": cmd_approvals,
    "simulator": cmd_simulator,
    "capture": cmd_capture,
    "replay": cmd_replay,
    "whatif": cmd_whatif,
    "tune": cmd_tune,
}


def print_rows(title: str, rows: list[dict[str, Any]]) -> None:
    table = Table(title=title, show_lines=False)
    if not rows:
        console.print(f"{title}: nothing yet")
        return
    for column in rows[0]:
        table.add_column(str(column))
    for row in rows:
        table.add_row(*(_cell(v) for v in row.values()))
    console.print(table)


def print_report(by_type: list[dict[str, Any]], kpis: dict[str, Any], *, title: str) -> None:
    print_rows(
        title, [row for row in by_type if any(v for k, v in row.items() if k != "error_type")]
    )
    if kpis:
        print_rows("KPIs", [{"metric": k, "value": v} for k, v in kpis.items()])


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.2f}"
    if isinstance(value, list | tuple):
        return ", ".join(map(str, value))
    return str(value)


if __name__ == "__main__":
    sys.exit(main())
