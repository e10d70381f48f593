"""The contenders: how each is started, in which environment, and with which settings.

Every contender is a separate process tree started by the harness, reading the same pre-filled
queue and running the same handler work (:mod:`bench.recorder`); the harness measures it from
outside through /proc. Standard library only (imported from the peers' environment too).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class LaunchContext:
    """Everything a contender needs to find its queue and report its work."""

    endpoint: str
    queue_url: str
    queue_name: str
    records: str
    handler: str
    workers: int
    python: str  # our venv's interpreter
    peers_python: str  # the separate Celery/dramatiq venv's interpreter ("" if unavailable)
    region: str = "us-east-1"
    access_key: str = "bench"
    secret_key: str = "bench"
    #: Where a goraxfast contender writes engine.stats() after its run, and its samples while
    #: it runs (bench/contenders/engine.py); "" for none.
    stats_out: str = ""
    samples_out: str = ""

    def env(self) -> dict[str, str]:
        """How the peers' apps (configured at import time by their CLIs) learn their settings."""
        return {
            "BENCH_ENDPOINT": self.endpoint,
            "BENCH_QUEUE_URL": self.queue_url,
            "BENCH_QUEUE_NAME": self.queue_name,
            "BENCH_RECORDS": self.records,
            "BENCH_HANDLER": self.handler,
            "BENCH_WORKERS": str(self.workers),
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_DEFAULT_REGION": self.region,
        }

    def common_args(self) -> list[str]:
        return [
            "--endpoint",
            self.endpoint,
            "--queue-url",
            self.queue_url,
            "--records",
            self.records,
            "--handler",
            self.handler,
            "--workers",
            str(self.workers),
        ]


@dataclass(frozen=True, slots=True)
class Contender:
    """One way of draining the queue.

    ``body_format`` says which envelope its messages need (``gorax``: the ExecutionMessage JSON
    as goraxfast's publisher sends it; ``celery``/``dramatiq``: the same payload wrapped by that
    framework's own message code). ``settings`` is printed next to its results.
    """

    name: str
    label: str
    argv: Callable[[LaunchContext], list[str]]
    settings: Callable[[LaunchContext], dict[str, Any]]
    body_format: str = "gorax"
    peer: bool = False
    #: Contenders that ignore the handler spec (the server ceiling only receives and deletes).
    ignores_handler: bool = False
    #: A goraxfast Engine: it reports engine.stats() (pipeline, dwell) to the harness.
    engine: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


def baseline(default_sqs_client: str) -> str:
    """The contender the report's ratios are to: the engine as a user gets it by default."""
    return "goraxfast-fast" if default_sqs_client == "fast" else "goraxfast-botocore"


def _module(name: str, *extra: str) -> Callable[[LaunchContext], list[str]]:
    def argv(ctx: LaunchContext) -> list[str]:
        return [ctx.python, "-m", name, *ctx.common_args(), *extra]

    return argv


def _engine_argv(client: str) -> Callable[[LaunchContext], list[str]]:
    def argv(ctx: LaunchContext) -> list[str]:
        out = [ctx.python, "-m", "bench.contenders.engine", *ctx.common_args()]
        out += ["--sqs-client", client]
        if ctx.stats_out:
            out += ["--stats-out", ctx.stats_out]
        if ctx.samples_out:
            out += ["--samples-out", ctx.samples_out]
        return out

    return argv


def _engine_settings(client: str) -> Callable[[LaunchContext], dict[str, Any]]:
    def settings(ctx: LaunchContext) -> dict[str, Any]:
        # Imported here: the peers' environments import this package without goraxfast.
        from goraxfast.config import Config
        from goraxfast.engine.build import pipeline_limits

        defaults = Config()
        limits = pipeline_limits(defaults)
        return {
            "worker_processes": ctx.workers,
            "sqs_client": client,
            "concurrent_workers": defaults.concurrent_workers,
            "prefetch": f"auto (0-{limits.max_prefetch})",
            "pollers": f"auto ({limits.min_pollers}-{limits.max_pollers})",
            "wait_time_s": defaults.wait_time_s,
            "ack_flush_ms": defaults.ack_flush_ms,
            "handler": "sync def (async def for sleep:MS)",
            "note": "Config defaults except the endpoint, worker count and sqs_client",
        }

    return settings


def _celery_argv(ctx: LaunchContext) -> list[str]:
    return [
        ctx.peers_python,
        "-m",
        "celery",
        "-A",
        "bench.contenders.celery_app",
        "worker",
        "--pool=prefork",
        f"--concurrency={ctx.workers}",
        "--loglevel=WARNING",
        "--without-gossip",
        "--without-mingle",
        "--without-heartbeat",
        "-Q",
        ctx.queue_name,
    ]


def _dramatiq_argv(ctx: LaunchContext) -> list[str]:
    return [
        ctx.peers_python,
        "-m",
        "dramatiq",
        "bench.contenders.dramatiq_app",
        "--processes",
        str(ctx.workers),
        "--threads",
        "8",
    ]


CONTENDERS: dict[str, Contender] = {
    c.name: c
    for c in (
        Contender(
            "goraxfast-botocore",
            "goraxfast Engine (botocore)",
            _engine_argv("botocore"),
            _engine_settings("botocore"),
            engine=True,
        ),
        Contender(
            "goraxfast-fast",
            "goraxfast Engine (fast data plane)",
            _engine_argv("fast"),
            _engine_settings("fast"),
            engine=True,
        ),
        Contender(
            "naive-boto3",
            "naive boto3 loop",
            _module("bench.contenders.naive"),
            lambda ctx: {
                "processes": 1,
                "receive": "10 per call, WaitTimeSeconds=20",
                "delete": "delete_message one by one",
                "note": "what gorax's consumer did",
            },
        ),
        Contender(
            "aio-batch",
            "asyncio + aiobotocore",
            _module("bench.contenders.aio", "--processes", "1", "--in-flight", "8"),
            lambda ctx: {
                "processes": 1,
                "receives_in_flight": 8,
                "receive": "10 per call, WaitTimeSeconds=20",
                "delete": "delete_message_batch per receive",
                "handler": "inline in the event loop (await for sleep:MS)",
            },
        ),
        Contender(
            "aio-procs",
            "asyncio + aiobotocore × N processes",
            lambda ctx: [
                ctx.python,
                "-m",
                "bench.contenders.aio",
                *ctx.common_args(),
                "--processes",
                str(ctx.workers),
                "--in-flight",
                "8",
            ],
            lambda ctx: {
                "processes": f"{ctx.workers} independent copies of aio-batch (forked)",
                "receives_in_flight": "8 per process",
                "delete": "delete_message_batch per receive",
            },
        ),
        Contender(
            "celery",
            "Celery + kombu SQS",
            _celery_argv,
            lambda ctx: {
                "pool": "prefork",
                "concurrency": ctx.workers,
                "polling_interval": 0,
                "wait_time_seconds": 10,
                "prefetch_multiplier": 4,
                "acks_late": False,
                "note": "kombu defaults except polling_interval=0 (its documented long-poll "
                "setting; the default 1 s drains ~8 msg/s)",
            },
            body_format="celery",
            peer=True,
        ),
        Contender(
            "dramatiq",
            "dramatiq + dramatiq_sqs",
            _dramatiq_argv,
            lambda ctx: {
                "processes": ctx.workers,
                "threads": 8,
                "broker": "SQSBroker defaults",
                "delete": "one message at a time (the broker's ack)",
            },
            body_format="dramatiq",
            peer=True,
        ),
        Contender(
            "ceiling",
            "server ceiling (raw HTTP)",
            _module("bench.contenders.ceiling", "--in-flight", "8"),
            lambda ctx: {
                "processes": 1,
                "client": "raw aiohttp + orjson, unsigned JSON 1.0 requests",
                "receives_in_flight": 8,
                "delete": "DeleteMessageBatch per receive",
                "handler": "none: receive and delete only",
            },
            ignores_handler=True,
        ),
    )
}

DEFAULT_ORDER = (
    "goraxfast-fast",
    "goraxfast-botocore",
    "naive-boto3",
    "aio-batch",
    "celery",
    "dramatiq",
    "ceiling",
)
SCALING_ORDER = ("goraxfast-fast", "goraxfast-botocore", "aio-procs")
