"""The ``queuekit`` command: parse arguments, build settings, make one library call.

Every error a user can cause (bad arguments, bad JSON, a broker that is down) ends in one
clear ``error: ...`` line on stderr and a non-zero exit code, never a traceback: 1 when a
command failed, 2 when the command line itself is malformed (click's convention for usage
errors: an unknown option, a non-integer ``--priority``...).

One-shot commands (``send``, ``stats``, ``dlq``) report a failure with that one line; the log
records of broker client libraries (a reconnecting client's chatter) are shown only with
``LOG_LEVEL=DEBUG``. ``--json`` output is plain JSON on stdout, for scripts.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import orjson
import typer
from rich.console import Console
from rich.table import Table

from queuekit.backends import create_broker
from queuekit.broker import Admin, Broker
from queuekit.errors import ConfigError, QueuekitError
from queuekit.logs import configure_logging
from queuekit.message import Message
from queuekit.settings import Settings
from queuekit.worker import App

T = TypeVar("T")
EXIT_ERROR = 1
EXIT_USAGE = 2

cli = typer.Typer(
    name="queuekit",
    help="Message queues with the same semantics on RabbitMQ, Kafka, Redis and SQLite.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
dlq = typer.Typer(help="Inspect, replay and purge dead letters.", no_args_is_help=True)
cli.add_typer(dlq, name="dlq")
out = Console()
err = Console(stderr=True)

QueueType = Annotated[
    str | None,
    typer.Option("--queue-type", "-q", help="Backend: sqlite, memory, redis, rabbitmq, kafka."),
]


def main() -> None:
    """Console-script entry point."""
    try:
        code = cli(standalone_mode=False)
    except typer.TyperException as exc:  # usage errors: bad option values, unknown commands
        message = exc.format_message()
        if not message.strip():  # a bare group command: its help is already printed
            sys.exit(EXIT_USAGE)
        context = getattr(exc, "ctx", None)
        if context is not None:
            message = f"{message} (see '{context.command_path} --help')"
        print_error(message)
        sys.exit(getattr(exc, "exit_code", EXIT_USAGE))
    except typer.Abort:  # a confirmation prompt refused, or no answer on stdin
        print_error("aborted, nothing was changed (--yes skips a confirmation)")
        sys.exit(EXIT_ERROR)
    sys.exit(code if isinstance(code, int) else 0)


def print_error(message: str) -> None:
    """Print ``error: message`` as one line on stderr (never wrapped to the terminal width)."""
    flat = " ".join(message.split())
    err.print(f"[bold red]error:[/] {flat}", highlight=False, markup=True, soft_wrap=True)


def fail(message: str) -> typer.Exit:
    """Print one error line and return the exit to raise."""
    print_error(message)
    return typer.Exit(EXIT_ERROR)


def confirm_or_fail(yes: bool, question: str, refused: str) -> None:
    """Go on if ``yes`` (``--yes``) or the user answers yes to ``question``; else exit with
    ``refused`` as the one error line (``--yes`` is named as the way to skip the question)."""
    if not yes and not typer.confirm(question):
        raise fail(f"{refused} (--yes skips the question)")


def settings_from_env(*, one_shot: bool = False, **overrides: Any) -> Settings:
    """Settings from the environment plus command-line overrides, or exit with one line.

    ``one_shot`` commands show only queuekit's own log records unless ``LOG_LEVEL=DEBUG``.
    """
    try:
        settings = Settings.from_env(**overrides)
    except ConfigError as exc:
        raise fail(str(exc)) from None
    configure_logging(settings.log_level, settings.log_format)
    if one_shot and settings.log_level.upper() != "DEBUG":
        for handler in logging.getLogger().handlers:
            handler.addFilter(_queuekit_records_only)
    return settings


def _queuekit_records_only(record: logging.LogRecord) -> bool:
    return record.name == "queuekit" or record.name.startswith("queuekit.")


def print_json(value: Any) -> None:
    """Write ``value`` as indented JSON on stdout, untouched by the terminal renderer."""
    sys.stdout.write(orjson.dumps(value, option=orjson.OPT_INDENT_2).decode() + "\n")


def load_app(spec: str) -> App:
    """Import ``module:attribute`` (from the current directory too) and return the App."""
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise fail(f"--app must look like 'package.module:app', got {spec!r}")
    if str(Path.cwd()) not in sys.path:
        sys.path.insert(0, str(Path.cwd()))
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise fail(f"cannot import {module_name!r}: {exc}") from None
    except Exception as exc:  # the module itself failed while importing
        raise fail(f"importing {module_name!r} failed: {type(exc).__name__}: {exc}") from None
    app = getattr(module, attribute, None)
    if not isinstance(app, App):
        raise fail(f"{spec!r} is not a queuekit App")
    return app


def run_async(work: Callable[[], Awaitable[T]]) -> T:
    """Run ``work`` on a fresh event loop, turning queuekit errors into one clear line."""
    try:
        return asyncio.run(_run(work))
    except QueuekitError as exc:
        raise fail(str(exc)) from None
    except KeyboardInterrupt:
        raise typer.Exit(130) from None


async def _run(work: Callable[[], Awaitable[T]]) -> T:
    return await work()


async def with_admin(settings: Settings, use: Callable[[Admin], Awaitable[T]]) -> T:
    """Connect a broker, hand it to ``use`` as an Admin, and close it."""
    broker = create_broker(settings)
    if not isinstance(broker, Admin):
        raise fail(f"the {settings.queue_type} backend has no admin operations")
    async with broker:
        return await use(broker)


@cli.command()
def run(
    app: Annotated[str | None, typer.Option(help="Handlers to run, as module:app.")] = None,
    port: Annotated[int | None, typer.Option(help="API port (default API_PORT, 8080).")] = None,
    host: Annotated[str | None, typer.Option(help="API bind address.")] = None,
    queue_type: QueueType = None,
) -> None:
    """Run the producer API, the dashboard and a worker in one process."""
    from queuekit.serving import serve

    settings = settings_from_env(api_port=port, api_host=host, queue_type=queue_type)
    handlers = load_app(app or settings.queuekit_app)
    code = run_async(lambda: serve(settings, app=handlers, api=True, worker=True))
    raise typer.Exit(code)


@cli.command()
def api(
    app: Annotated[
        str | None, typer.Option(help="module:app whose topics and schemas the API enforces.")
    ] = None,
    port: Annotated[int | None, typer.Option(help="API port (default API_PORT, 8080).")] = None,
    host: Annotated[str | None, typer.Option(help="API bind address.")] = None,
    queue_type: QueueType = None,
) -> None:
    """Run only the producer API and dashboard."""
    from queuekit.serving import serve

    settings = settings_from_env(api_port=port, api_host=host, queue_type=queue_type)
    handlers = load_app(app) if app else None
    code = run_async(lambda: serve(settings, app=handlers, api=True, worker=False))
    raise typer.Exit(code)


@cli.command()
def worker(
    app: Annotated[str, typer.Argument(help="Handlers to run, as module:app.")],
    concurrency: Annotated[int | None, typer.Option(help="Messages in flight at once.")] = None,
    metrics_port: Annotated[
        int | None, typer.Option(help="Port of /health and /metrics (0: off).")
    ] = None,
    queue_type: QueueType = None,
) -> None:
    """Run a worker for the handlers of APP until SIGTERM or SIGINT."""
    from queuekit.worker import run_worker

    settings = settings_from_env(
        worker_concurrency=concurrency, worker_metrics_port=metrics_port, queue_type=queue_type
    )
    handlers = load_app(app)
    code = run_async(lambda: run_worker(handlers, settings))
    raise typer.Exit(code)


@cli.command()
def send(
    topic: Annotated[str, typer.Argument(help="Topic to publish to.")],
    payload: Annotated[str, typer.Argument(help="The payload, as JSON.")],
    priority: Annotated[int, typer.Option(help="0 (default) to 9 (most urgent).")] = 0,
    delay: Annotated[float | None, typer.Option(help="Seconds before delivery.")] = None,
    key: Annotated[str | None, typer.Option(help="Partitioning / business key.")] = None,
    header: Annotated[
        list[str] | None, typer.Option("--header", "-H", help="A header as name=value.")
    ] = None,
    queue_type: QueueType = None,
) -> None:
    """Publish one message and print its id."""
    settings = settings_from_env(one_shot=True, queue_type=queue_type)
    try:
        value = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        raise fail(f"payload is not valid JSON: {exc}") from None
    headers: dict[str, str] = {}
    for item in header or []:
        name, sep, val = item.partition("=")
        if not sep or not name:
            raise fail(f"--header must look like name=value, got {item!r}")
        headers[name] = val
    try:
        message = Message.build(
            topic, value, priority=priority, delay=delay, key=key, headers=headers
        )
    except QueuekitError as exc:
        raise fail(str(exc)) from None

    async def publish() -> None:
        broker: Broker = create_broker(settings)
        async with broker:
            await broker.publish([message])

    run_async(publish)
    out.print(message.id)


@cli.command()
def stats(
    topic: Annotated[str | None, typer.Argument(help="One topic (default: all).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    queue_type: QueueType = None,
) -> None:
    """Show depth, in-flight, delayed and dead-letter counts per topic and group."""
    settings = settings_from_env(one_shot=True, queue_type=queue_type)

    async def collect(admin: Admin) -> list[Any]:
        topics = [topic] if topic else await admin.list_topics()
        return [await admin.topic_stats(name) for name in topics]

    all_stats = run_async(lambda: with_admin(settings, collect))
    if as_json:
        rows = [
            {
                "topic": s.topic,
                "dead_letters": s.dead_letters,
                "groups": [
                    {
                        "group": g.group,
                        "depth": g.depth,
                        "in_flight": g.in_flight,
                        "delayed": g.delayed,
                        "lag": g.lag,
                        "consumers": g.consumers,
                    }
                    for g in s.groups
                ],
            }
            for s in all_stats
        ]
        print_json(rows)
        return
    table = Table("topic", "group", "depth", "in flight", "delayed", "lag", "dead letters")
    for s in all_stats:
        groups = s.groups or ()
        if not groups:
            table.add_row(s.topic, "-", "0", "0", "0", "0", str(s.dead_letters))
        for g in groups:
            table.add_row(
                s.topic,
                g.group,
                str(g.depth),
                str(g.in_flight),
                str(g.delayed),
                str(g.lag),
                str(s.dead_letters),
            )
    out.print(table)


@cli.command("delete-topic")
def delete_topic(
    topic: Annotated[str, typer.Argument(help="The topic to delete.")],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    queue_type: QueueType = None,
) -> None:
    """Delete TOPIC with every message, retry and dead letter of every group."""
    settings = settings_from_env(one_shot=True, queue_type=queue_type)
    confirm_or_fail(
        yes,
        f"Delete {topic} with every message and dead letter of every group?",
        "not confirmed, nothing was deleted",
    )
    run_async(lambda: with_admin(settings, lambda a: a.delete_topic(topic)))
    out.print(f"deleted {topic}")


@dlq.command("list")
def dlq_list(
    topic: Annotated[str, typer.Argument(help="The topic whose dead letters to show.")],
    limit: Annotated[int, typer.Option(help="How many, oldest first.")] = 20,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    queue_type: QueueType = None,
) -> None:
    """List dead letters of TOPIC, oldest first."""
    settings = settings_from_env(one_shot=True, queue_type=queue_type)
    letters = run_async(lambda: with_admin(settings, lambda a: a.dead_letters(topic, limit)))
    if as_json:
        rows = [
            {
                "id": d.message.id,
                "group": d.group,
                "reason": d.reason,
                "error": d.error,
                "attempts": d.attempts,
                "payload": d.message.payload.decode("utf-8", "replace"),
            }
            for d in letters
        ]
        print_json(rows)
        return
    table = Table("id", "group", "attempts", "reason", "error", "payload")
    for d in letters:
        body = d.message.payload.decode("utf-8", "replace")
        table.add_row(
            d.message.id,
            d.group,
            str(d.attempts),
            d.reason,
            d.error or "",
            body if len(body) <= 60 else body[:57] + "...",
        )
    out.print(table)


@dlq.command("replay")
def dlq_replay(
    topic: Annotated[str, typer.Argument(help="The topic whose dead letters to replay.")],
    ids: Annotated[
        list[str] | None, typer.Option("--id", help="Replay only these ids (repeatable).")
    ] = None,
    queue_type: QueueType = None,
) -> None:
    """Send dead letters back to the group that failed them."""
    settings = settings_from_env(one_shot=True, queue_type=queue_type)
    count = run_async(
        lambda: with_admin(settings, lambda a: a.replay_dead_letters(topic, ids or None))
    )
    out.print(f"replayed {count} dead letter(s) of {topic}")


@dlq.command("purge")
def dlq_purge(
    topic: Annotated[str, typer.Argument(help="The topic whose dead letters to delete.")],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    queue_type: QueueType = None,
) -> None:
    """Delete every dead letter of TOPIC."""
    settings = settings_from_env(one_shot=True, queue_type=queue_type)
    confirm_or_fail(
        yes, f"Delete every dead letter of {topic}?", "not confirmed, nothing was purged"
    )
    count = run_async(lambda: with_admin(settings, lambda a: a.purge_dead_letters(topic)))
    out.print(f"purged {count} dead letter(s) of {topic}")


@cli.command()
def bench(
    count: Annotated[int, typer.Option(help="Messages in the throughput phase.")] = 10_000,
    payload_bytes: Annotated[int, typer.Option(help="Size of each JSON payload.")] = 1024,
    concurrency: Annotated[int, typer.Option(help="Worker calls in flight (prefetch).")] = 256,
    latency_fraction: Annotated[
        float, typer.Option(help="Latency phase rate, as a fraction of the peak (0: skip).")
    ] = 0.5,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON, no progress bar.")] = False,
    queue_type: Annotated[
        str | None,
        typer.Option("--backend", "--queue-type", "-q", help="sqlite, memory, redis, ..."),
    ] = None,
) -> None:
    """Measure end-to-end throughput and latency (publish -> handle -> ack) on a backend."""
    from rich.progress import BarColumn, MofNCompleteColumn, TextColumn
    from rich.progress import Progress as ProgressBar

    from queuekit.bench import BenchConfig, bench_backend

    settings = settings_from_env(queue_type=queue_type)
    try:
        config = BenchConfig(
            count=count,
            payload_bytes=payload_bytes,
            concurrency=concurrency,
            latency_fraction=latency_fraction,
        )
    except ConfigError as exc:
        raise fail(str(exc)) from None
    bar = ProgressBar(
        TextColumn("{task.description:<10}"),
        BarColumn(),
        MofNCompleteColumn(),
        console=err,
        transient=True,
        disable=as_json,
    )
    tasks: dict[str, Any] = {}

    def progress(phase: str, done: int, total: int) -> None:
        if phase not in tasks:
            tasks[phase] = bar.add_task(phase, total=total)
        bar.update(tasks[phase], completed=done)

    with bar:
        result = run_async(lambda: bench_backend(settings, config, progress=progress))
    if as_json:
        out.print_json(orjson.dumps(result.as_dict()).decode())
        return

    def ms(value: float | None) -> str:
        return "-" if value is None else f"{value:,.1f} ms"

    table = Table("backend", "messages", "end to end", "publish", "latency at", "p50", "p99")
    table.add_row(
        result.backend,
        f"{result.count:,} x {result.payload_bytes} B",
        f"{result.throughput:,.0f} msg/s",
        f"{result.publish_rate:,.0f} msg/s",
        "-" if result.latency_rate is None else f"{result.latency_rate:,.0f} msg/s",
        ms(result.p50_ms),
        ms(result.p99_ms),
    )
    out.print(table)
