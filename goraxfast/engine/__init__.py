"""The parent process: the one loop SQS → poller → dispatcher → ring → worker → dispatcher →
acker → SQS, and the lifecycle around it.

- :mod:`.engine`: the lifecycle only (start order, signals, the fatal path, stop order);
- :mod:`.build`: constructing the parts from a :class:`goraxfast.config.Config`;
- :mod:`.preflight`: what is checked against SQS before a worker is forked;
- :mod:`.pipeline`: how many receives are in flight (sized by the round trip, the rule is
  :mod:`goraxfast.core.pipeline`); :mod:`.poller`: long-polling receives;
- :mod:`.dispatch`: the per-message bookkeeping (the message lifecycle table is in its
  docstring); :mod:`.acker`: batched deletes, visibility changes and dead letters;
- :mod:`.timers`: the lease keeper and the throttle clock, each sleeping to its next deadline;
- :mod:`.seats`: the parent's record of one worker seat, shared by dispatcher and workforce;
  :mod:`.workforce`: forking (through the zygote), supervising and replacing workers;
- :mod:`.stats`: the engine's numbers, built from the parts' counter objects;
- :mod:`.wakeup`: a cheap single-waiter wake-up.

May import: everything below it (:mod:`goraxfast.core`, :mod:`goraxfast.config`,
:mod:`goraxfast.sqs`, :mod:`goraxfast.ipc`, :mod:`goraxfast.worker`, :mod:`goraxfast.ops`).
Never :mod:`goraxfast.cli` or :mod:`goraxfast.publish`.
"""
