"""``python -m benchmarks`` (``make bench``): raw clients vs queuekit vs peers, side by side."""

from __future__ import annotations

import argparse
from pathlib import Path

from benchmarks import harness, report

RESULTS = Path(__file__).resolve().parent / "results"


def parse(argv: list[str] | None = None) -> tuple[harness.Options, argparse.Namespace]:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--count", type=int, help="messages per round (default 5000)")
    parser.add_argument("--rounds", type=int, help="interleaved rounds (default 5)")
    parser.add_argument(
        "--only", help=f"comma-separated benchmarks among {','.join(harness.BENCHMARKS)}"
    )
    parser.add_argument("--skip-peers", action="store_true", help="no peer frameworks")
    parser.add_argument("--api-seconds", type=int, help="wrk duration (default 10)")
    parser.add_argument(
        "--quick", action="store_true", help="1 round of 1000 messages, wrk for 3 s"
    )
    parser.add_argument("--results-dir", type=Path, default=RESULTS)
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args(argv)
    only = tuple(harness.BENCHMARKS)
    if args.only:
        only = tuple(name.strip() for name in args.only.split(",") if name.strip())
        unknown = set(only) - set(harness.BENCHMARKS)
        if unknown:
            parser.error(f"unknown benchmark(s): {', '.join(sorted(unknown))}")
    quick = args.quick
    options = harness.Options(
        count=args.count or (1000 if quick else 5000),
        rounds=args.rounds or (1 if quick else 5),
        only=only,
        peers=not args.skip_peers,
        api_seconds=args.api_seconds or (3 if quick else 10),
    )
    if options.count < 1 or options.rounds < 1 or options.api_seconds < 1:
        parser.error("--count, --rounds and --api-seconds must be positive")
    return options, args


def main(argv: list[str] | None = None) -> None:
    options, args = parse(argv)
    run = harness.run(options, log=lambda line: print(line, flush=True))
    report.print_table(run)
    if not args.no_write:
        for path in report.write(run, args.results_dir):
            print(f"wrote {path}")


if __name__ == "__main__":
    main()
