"""Serve the floor or the naive app exactly as ``spinecds serve`` serves ours.

The same server definition (``service/serving.py``: gunicorn options, preloaded and GC-frozen app,
malloc environment), so the only difference is the app.

    .venv/bin/python -m bench.serve floor --port 8091 --workers 2 --threads 4
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from service.serving import pause_gc_until_frozen, preloaded_app, reexec_with_malloc_env, server_options


def _factory(name: str) -> Any:
    if name == "floor":
        from bench.floor_app import create_floor_app

        return create_floor_app()
    from bench.naive import create_naive_app

    return create_naive_app()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.serve")
    parser.add_argument("app", choices=["floor", "naive"])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--threads", type=int, default=4)
    args = parser.parse_args(argv)
    reexec_with_malloc_env("bench.serve")
    pause_gc_until_frozen()  # as spinecds serve
    options = server_options(args.host, args.port, args.workers, args.threads)
    preloaded_app(lambda: _factory(args.app), options).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
