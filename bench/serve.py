"""Serve the floor or the naive app exactly as ``spinecds serve`` serves ours.

Same gunicorn options as ``service/cli.py`` (gthread workers, timeout, no access log, no preload)
and the same malloc environment (re-exec once), so the only difference is the app.

    .venv/bin/python -m bench.serve floor --port 8091 --workers 2 --threads 4
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from service.cli import MALLOC_ENV


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.serve")
    parser.add_argument("app", choices=["floor", "naive"])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--threads", type=int, default=4)
    args = parser.parse_args(argv)
    if any(os.environ.get(k) != v for k, v in MALLOC_ENV.items()):
        os.execve(sys.executable, [sys.executable, "-m", "bench.serve", *sys.argv[1:]], {**os.environ, **MALLOC_ENV})
    from gunicorn.app.base import BaseApplication

    class _App(BaseApplication):  # type: ignore[misc]
        def load_config(self) -> None:
            options: dict[str, Any] = {
                "bind": f"{args.host}:{args.port}",
                "workers": args.workers,
                "threads": args.threads,
                "timeout": 60,
                "graceful_timeout": 30,
                "accesslog": None,
                "preload_app": False,
            }
            for key, value in options.items():
                self.cfg.set(key, value)

        def load(self) -> Any:
            if args.app == "floor":
                from bench.floor_app import create_floor_app

                return create_floor_app()
            from bench.naive import create_naive_app

            return create_naive_app()

    _App().run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
