"""The processes the parent forks: the zygote that forks workers, and the worker loop that runs
the user's handler.

- :mod:`.zygote`: a small process forked early, before the parent opens sockets or starts
  threads, that forks (and reaps) workers on the parent's request;
- :mod:`.loop`: one worker: read a delivery from its ring, run the handler, write the outcome;
- :mod:`.handler`: loading and binding the user's handler, and what it may raise
  (:class:`~.handler.Retry`, :class:`~.handler.Reject`).

May import: :mod:`goraxfast.core`, :mod:`goraxfast.ipc`, :mod:`goraxfast.errors`. Never the
engine: the worker side knows nothing of SQS.
"""
