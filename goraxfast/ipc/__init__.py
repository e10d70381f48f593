"""What the parent and its forked workers share: shared-memory rings and their doorbells.

Both sides of a seat import :mod:`.rings` (the parent writes deliveries and reads results, the
worker the other way round), so it sits below both the engine and the worker side.

May import: :mod:`goraxfast.core`, :mod:`goraxfast.errors`, the standard library.
"""
