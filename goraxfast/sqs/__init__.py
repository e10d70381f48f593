"""The SQS clients: how requests reach SQS, and nothing about what the engine decides.

- :mod:`.botocore`: aiobotocore (async) and boto3 (sync) clients, the control plane (queue
  attributes, creating queues) and the botocore data plane;
- :mod:`.fast`: the lean data-plane client (its own signing and HTTP/1.1 pool, :mod:`.httpclient`);
- :mod:`.compat`: the AWS-compatibility policies both follow, taken from botocore (endpoint,
  proxies, TLS trust, credentials, retry quota, error shapes);
- :mod:`.choice`: which client the engine and the publishers get.

May import: :mod:`goraxfast.core`, :mod:`goraxfast.config`, :mod:`goraxfast.errors`, and
boto3/botocore/aiobotocore. Never the engine, the worker side or the operators' face.
"""
