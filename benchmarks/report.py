"""Turn a harness run into one table of medians and ratios, and the results files.

Ratios are queuekit's median over the other side's median, from the same run. Targets:
queuekit end to end >= 0.8x the raw client of each backend and > 1x every peer framework on
the same broker; ``POST /send`` >= 0.8x the bare Starlette endpoint; the queuekit worker's
peak RSS <= 1.5x the raw loop's.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from benchmarks.harness import Run, Side
from benchmarks.workload import PAYLOAD_BYTES, PREFETCH, PUBLISH_BATCH

RATE_VS_RAW = 0.8
RSS_VS_RAW = 1.5


@dataclass(frozen=True, slots=True)
class Row:
    benchmark: str
    side: str
    unit: str
    median: float | None
    rounds: list[float]
    p99_ms: float | None
    peak_rss_mib: float | None
    rate_ratio: float | None  # queuekit / this side
    rss_ratio: float | None  # queuekit / this side
    target: str
    met: bool | None
    failures: list[str]


def rows(run: Run) -> list[Row]:
    table: list[Row] = []
    for benchmark in dict.fromkeys(side.benchmark for side in run.sides):
        sides = [s for s in run.sides if s.benchmark == benchmark]
        ours = next((s for s in sides if s.role == "queuekit"), None)
        for side in sides:
            table.append(_row(side, ours))
    return table


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None or b == 0 else a / b


def _row(side: Side, ours: Side | None) -> Row:
    unit = "req/s" if side.benchmark == "api" else "msg/s"
    rate_ratio = rss_ratio = None
    target, met = "", None
    if ours is not None and side is not ours:
        rate_ratio = _ratio(ours.median_rate, side.median_rate)
        if side.role == "raw":
            rss_ratio = _ratio(ours.median_rss_mib, side.median_rss_mib)
            target = f"rate >= {RATE_VS_RAW}x"
            checks = [rate_ratio is not None and rate_ratio >= RATE_VS_RAW]
            if side.benchmark != "api":
                target += f", RSS <= {RSS_VS_RAW}x"
                checks.append(rss_ratio is not None and rss_ratio <= RSS_VS_RAW)
            met = all(checks)
        elif side.role == "peer":
            target = "rate > 1x"
            met = rate_ratio is not None and rate_ratio > 1
    if side.role == "queuekit-auth" and ours is not None:
        rate_ratio = _ratio(ours.median_rate, side.median_rate)
        target = "(auth on: for information)"
    return Row(
        benchmark=side.benchmark,
        side=side.name,
        unit=unit,
        median=side.median_rate,
        rounds=[s.rate for s in side.samples],
        p99_ms=side.median_extra("p99_ms"),
        peak_rss_mib=side.median_rss_mib,
        rate_ratio=rate_ratio,
        rss_ratio=rss_ratio,
        target=target,
        met=met,
        failures=side.failures,
    )


def _fmt(value: float | None, spec: str, suffix: str = "") -> str:
    return "-" if value is None else f"{value:{spec}}{suffix}"


COLUMNS = (
    "benchmark",
    "side",
    "median",
    "rounds",
    "p99",
    "peak RSS",
    "qk / side (rate)",
    "qk / side (RSS)",
    "target",
    "met",
)


def cells(row: Row) -> list[str]:
    met = {None: "", True: "yes", False: "NO"}[row.met]
    if row.failures:
        met = (met + " " if met else "") + f"({len(row.failures)} failed)"
    return [
        row.benchmark,
        row.side,
        _fmt(row.median, ",.0f", f" {row.unit}"),
        " ".join(f"{r:,.0f}" for r in row.rounds) or "-",
        _fmt(row.p99_ms, ".1f", " ms"),
        _fmt(row.peak_rss_mib, ".1f", " MiB"),
        _fmt(row.rate_ratio, ".2f", "x"),
        _fmt(row.rss_ratio, ".2f", "x"),
        row.target,
        met,
    ]


def print_table(run: Run) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(*COLUMNS, title=_title(run))
    for row in rows(run):
        table.add_row(*cells(row))
    console = Console(width=200)
    console.print(table)
    for note in run.notes:
        console.print(f"note: {note}")
    for row in rows(run):
        for failure in row.failures:
            console.print(f"[red]{row.benchmark} / {row.side} failed:[/] {failure}")


def _title(run: Run) -> str:
    o = run.options
    return (
        f"{o.count:,} x {PAYLOAD_BYTES} B JSON per round, prefetch {PREFETCH}, publish batch "
        f"{PUBLISH_BATCH}; medians of {o.rounds} interleaved rounds; API: wrk -t2 -c64 "
        f"-d{o.api_seconds}s"
    )


def markdown(run: Run) -> str:
    env = run.environment
    lines = [
        f"# queuekit benchmarks, {env['date']}",
        "",
        f"{_title(run)}. `make bench` took {run.seconds / 60:.1f} minutes.",
        "",
        "| " + " | ".join(COLUMNS) + " |",
        "|" + "---|" * len(COLUMNS),
    ]
    lines += ["| " + " | ".join(cells(row)) + " |" for row in rows(run)]
    lines += ["", *[f"- note: {note}" for note in run.notes]]
    for row in rows(run):
        lines += [f"- {row.benchmark} / {row.side} failed: {f}" for f in row.failures]
    lines += ["", "## Environment", "", "```json", json.dumps(env, indent=2), "```", ""]
    return "\n".join(lines)


def as_json(run: Run) -> dict[str, Any]:
    return {
        "options": asdict(run.options),
        "seconds": run.seconds,
        "environment": run.environment,
        "notes": run.notes,
        "rows": [asdict(row) for row in rows(run)],
    }


def write(run: Run, folder: Path) -> tuple[Path, Path]:
    """Write ``<date>.md`` and ``<date>.json`` into ``folder``; return their paths.

    A later run of the same day writes ``<date>-2.md`` and so on: it never overwrites one.
    """
    folder.mkdir(parents=True, exist_ok=True)
    date = run.environment["date"][:10]
    stem, n = date, 1
    while (folder / f"{stem}.md").exists() or (folder / f"{stem}.json").exists():
        n += 1
        stem = f"{date}-{n}"
    md, js = folder / f"{stem}.md", folder / f"{stem}.json"
    md.write_text(markdown(run))
    js.write_text(json.dumps(as_json(run), indent=2) + "\n")
    return md, js
