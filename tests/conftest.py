"""Shared fixtures: one real moto server per test session on loopback, fresh queues per test."""

from __future__ import annotations

import contextlib
import itertools
import os
from collections.abc import Iterator

import boto3
import pytest

from goraxfast.cli.moto_server import MotoServer
from goraxfast.config import Config

REGION = "us-east-1"
_queue_names = itertools.count()


@pytest.fixture(scope="session")
def moto_server() -> Iterator[MotoServer]:
    with MotoServer() as server:
        yield server


@pytest.fixture(scope="session")
def sqs_endpoint(moto_server: MotoServer) -> str:
    return moto_server.endpoint


@pytest.fixture(scope="session")
def boto_sqs(sqs_endpoint: str):  # type: ignore[no-untyped-def]
    """A plain boto3 client: the test's independent view of the queue (not the code under test)."""
    return boto3.client(
        "sqs",
        endpoint_url=sqs_endpoint,
        region_name=REGION,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def _unique(prefix: str) -> str:
    return f"{prefix}-{os.getpid()}-{next(_queue_names)}"


@pytest.fixture
def queue_pair(boto_sqs) -> tuple[str, str]:  # type: ignore[no-untyped-def]
    """A fresh main queue and DLQ (redrive after 5 receives), deleted after the test."""
    dlq_url = boto_sqs.create_queue(QueueName=_unique("dlq"))["QueueUrl"]
    dlq_arn = boto_sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]
    main_url = boto_sqs.create_queue(
        QueueName=_unique("main"),
        Attributes={
            "RedrivePolicy": f'{{"deadLetterTargetArn":"{dlq_arn}","maxReceiveCount":"5"}}',
            "VisibilityTimeout": "30",
        },
    )["QueueUrl"]
    yield main_url, dlq_url
    for url in (main_url, dlq_url):
        with contextlib.suppress(Exception):
            boto_sqs.delete_queue(QueueUrl=url)


@pytest.fixture
def config(sqs_endpoint: str, queue_pair: tuple[str, str]) -> Config:
    """A Config pointing at the test's own queues on the moto server."""
    main_url, dlq_url = queue_pair
    return Config(
        queue_url=main_url,
        dlq_url=dlq_url,
        aws_region=REGION,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        aws_endpoint=sqs_endpoint,
        wait_time_s=1,
        poll_interval_s=0.1,
    )
