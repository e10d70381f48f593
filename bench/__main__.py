"""python -m bench: the end-to-end bench, alone or (--all) the whole suite.

Writes bench/results/<timestamp>/: results.json, results.md and the plots (throughput.png,
scaling.png, latency.png, publish.png; with the bench extra's matplotlib).

Examples:
    python -m bench --endpoint http://127.0.0.1:4566 --messages 2000 --contenders goraxfast-fast,aio-batch
    python -m bench --servers fauxqs --handler cpu:2 --workers 2
    python -m bench --servers fauxqs --rtt-ms 0,15,40 --contenders goraxfast-fast,aio-batch
    python -m bench --servers fauxqs --contenders ceiling --runs 1 --publish --publish-messages 2000
    python -m bench --all          # what `make bench` runs: LocalStack and fauxqs, everything
"""

from __future__ import annotations

import argparse
import sys

from bench.contenders import CONTENDERS, DEFAULT_ORDER


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    where = p.add_argument_group("server")
    where.add_argument("--endpoint", help="use this SQS endpoint instead of starting servers")
    where.add_argument(
        "--server-pid",
        type=int,
        default=0,
        help="with --endpoint: the server's pid, to report its CPU",
    )
    where.add_argument(
        "--servers", default="localstack,fauxqs", help="servers to start (localstack, fauxqs, moto)"
    )
    e2e = p.add_argument_group("end-to-end")
    e2e.add_argument(
        "--messages",
        default="localstack=3000,fauxqs=10000,3000",
        help="measured messages per run: N, or per server as name=N,...,N (last: any other). "
        "fauxqs gets more because fast contenders drain 3000 in a few tenths of a second",
    )
    e2e.add_argument("--warmup", type=int, default=300, help="messages handled before measuring")
    e2e.add_argument("--handler", default="noop", help="noop | cpu:MS | sleep:MS")
    e2e.add_argument(
        "--workers", type=int, default=2, help="worker processes (goraxfast, Celery, dramatiq)"
    )
    e2e.add_argument("--runs", type=int, default=3, help="runs per contender (median reported)")
    e2e.add_argument(
        "--contenders",
        default=",".join(DEFAULT_ORDER),
        help=f"comma-separated, from: {', '.join(CONTENDERS)}",
    )
    e2e.add_argument(
        "--latency-messages", type=int, default=60, help="per run, published one at a time"
    )
    e2e.add_argument("--latency-rate", type=float, default=50.0, help="msgs/s of the latency phase")
    e2e.add_argument(
        "--rtt-ms",
        default="0",
        help="added round trips, comma-separated ms (0 = straight to the server): each "
        "contender also runs through a delay proxy (bench/delayproxy.py) adding that much to "
        "each of its SQS calls, e.g. 0,15,40 (real SQS in-region: ~10-30 ms)",
    )
    extra = p.add_argument_group("other runs")
    extra.add_argument("--all", action="store_true", help="--micro --scaling --publish")
    extra.add_argument(
        "--micro", action="store_true", help="pytest-benchmark micro benches in bench/"
    )
    extra.add_argument(
        "--scaling", action="store_true", help="CPU-bound scaling: goraxfast vs aio × N"
    )
    extra.add_argument("--scaling-servers", default="fauxqs", help="servers to run scaling on")
    extra.add_argument("--scaling-handler", default="cpu:5")
    extra.add_argument("--scaling-workers", default="1,2,4")
    extra.add_argument("--scaling-messages", type=int, default=800)
    extra.add_argument("--scaling-runs", type=int, default=3)
    extra.add_argument("--publish", action="store_true", help="batch publishers vs send_message")
    extra.add_argument("--publish-messages", type=int, default=1000)
    extra.add_argument("--publish-runs", type=int, default=2)
    p.add_argument("--out", help="results folder (default bench/results/<timestamp>)")
    args = p.parse_args(argv)
    if args.all:
        args.micro = args.scaling = args.publish = True
    from bench.recorder import HandlerSpec
    from bench.suite import message_counts, rtt_list

    try:
        message_counts(args.messages)
        rtt_list(args.rtt_ms)
        HandlerSpec.parse(args.handler)
        HandlerSpec.parse(args.scaling_handler)
    except ValueError as exc:
        p.error(str(exc))
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from bench import suite

    return suite.main(args)


if __name__ == "__main__":
    sys.exit(main())
