"""Command line shared by the Python contenders (engine, naive, aio, ceiling)."""

from __future__ import annotations

import argparse


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--endpoint", required=True)
    p.add_argument("--queue-url", required=True)
    p.add_argument("--records", required=True, help="file the handler appends records to")
    p.add_argument("--handler", default="noop", help="noop | cpu:MS | sleep:MS")
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--region", default="us-east-1")
    return p
