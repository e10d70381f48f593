"""The installed distribution's version, read once: what an operator upgraded to, for the start
line, ``--version``, the build-info metric and the tracer's instrumentation scope. Below every
layer, so that each of them asks this one place (``__version__`` in the package is the source
tree's, not what pip installed)."""

from __future__ import annotations

import importlib.metadata
from functools import cache

__all__ = ["installed_version"]

NOT_INSTALLED = "unknown (not installed)"


@cache
def installed_version() -> str:
    try:
        return importlib.metadata.version("goraxfast")
    except importlib.metadata.PackageNotFoundError:
        return NOT_INSTALLED
