"""goraxfast: drain SQS queues of gorax workflow executions as fast as the hardware allows.

The public surface is re-exported here; everything else is an implementation module.
"""

from goraxfast.config import Config
from goraxfast.core.gotime import UTCTimestamp
from goraxfast.core.message import ExecutionMessage, decode_message, encode_message
from goraxfast.errors import (
    ConfigError,
    EngineError,
    GoraxfastError,
    HandlerError,
    MessageDecodeError,
    MessageEncodeError,
    MessageError,
    MessageTooLargeError,
    QueueDoesNotExistError,
    ReceiptHandleInvalidError,
    SQSError,
    ValidationError,
)
from goraxfast.worker.handler import DeliveryInfo, Reject, Retry

__version__ = "0.1.0"

_LAZY = {
    "Engine": "goraxfast.engine.engine",
    "Publisher": "goraxfast.publish.publisher",
    "SyncPublisher": "goraxfast.publish.publisher",
    "PublisherAdapter": "goraxfast.publish.adapter",
    "SQSClient": "goraxfast.sqs.botocore",
    "SyncSQSClient": "goraxfast.sqs.botocore",
    "MetricsCollector": "goraxfast.ops.queue_metrics",
}


def __getattr__(name: str) -> object:
    """Import the heavier pieces (aiobotocore, uvloop) only when they are asked for."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'goraxfast' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)


__all__ = [  # noqa: RUF022 - public names first, then the lazy ones
    "Config",
    "ConfigError",
    "DeliveryInfo",
    "EngineError",
    "ExecutionMessage",
    "GoraxfastError",
    "HandlerError",
    "MessageDecodeError",
    "MessageEncodeError",
    "MessageError",
    "MessageTooLargeError",
    "QueueDoesNotExistError",
    "ReceiptHandleInvalidError",
    "Reject",
    "Retry",
    "SQSError",
    "UTCTimestamp",
    "ValidationError",
    "__version__",
    "decode_message",
    "encode_message",
    "Engine",
    "Publisher",
    "SyncPublisher",
    "PublisherAdapter",
    "SQSClient",
    "SyncSQSClient",
    "MetricsCollector",
]
