"""For applications: publishing ``ExecutionMessage``s (:mod:`.publisher`, single and batch,
chunked to SQS's limits) and the thin adapter that builds them (:mod:`.adapter`).

May import: :mod:`goraxfast.core`, :mod:`goraxfast.config`, :mod:`goraxfast.sqs`,
:mod:`goraxfast.errors`. Never the engine: a web app that publishes forks no workers.
"""
