"""goraxfast's benchmark suite: contenders drained side by side on the same SQS server.

``python -m bench --help`` for the end-to-end bench; ``make bench`` runs everything (micro
benches, end-to-end on LocalStack and fauxqs, CPU scaling, publishing) and writes
``bench/results/<timestamp>/``.

This package and :mod:`bench.recorder` import nothing outside the standard library, because
the Celery and dramatiq contenders import them from a separate virtual environment
(``bench/.venv-peers``) that does not have goraxfast installed.
"""
