"""The operators' face: the health and metrics HTTP server, the Prometheus exposition, and the
queue metrics read from SQS (depth, age of the oldest message).

May import: :mod:`goraxfast.core`, :mod:`goraxfast.errors`, :mod:`goraxfast.config`. Never the
engine: the engine hands it callbacks and counter snapshots, so this layer can serve any of them.
"""
