"""``python -m benchmarks.sides <side> <backend> --count N``: one round of one side."""

from __future__ import annotations

import argparse

SIDES = ("raw", "queuekit", "floor", "floor-sticky")  # the floors: Kafka only
BACKENDS = ("sqlite", "redis", "rabbitmq", "kafka", "memory")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("side", choices=SIDES)
    parser.add_argument("backend", choices=BACKENDS)
    parser.add_argument("--count", type=int, required=True)
    args = parser.parse_args()
    if args.side == "queuekit":
        from benchmarks.sides import queuekit_side

        queuekit_side.run(args.backend, args.count)
        return
    if args.side.startswith("floor"):
        if args.backend != "kafka":
            raise SystemExit(f"no floor side for {args.backend}")
        from benchmarks.sides import floor_kafka

        floor_kafka.run(args.count, sticky=args.side == "floor-sticky")
        return
    if args.backend == "sqlite":
        from benchmarks.sides import raw_sqlite as raw
    elif args.backend == "redis":
        from benchmarks.sides import raw_redis as raw  # type: ignore[no-redef]
    elif args.backend == "rabbitmq":
        from benchmarks.sides import raw_rabbitmq as raw  # type: ignore[no-redef]
    elif args.backend == "kafka":
        from benchmarks.sides import raw_kafka as raw  # type: ignore[no-redef]
    else:
        raise SystemExit(f"no raw side for {args.backend}")
    raw.run(args.count)


if __name__ == "__main__":
    main()
