"""The production WSGI server: gunicorn with the options ``spinecds serve`` runs under.

One definition, used by ``spinecds serve`` and by the benchmark's floor and naive apps
(``bench/serve.py``), so a comparison differs only in the app.

* glibc allocator settings (``MALLOC_ENV``) are read only at process start: ``reexec_with_malloc_env``
  re-executes the process once with them unless they are already set (the Docker image sets them).
* gthread workers; the app is built once in the master (``preload_app``) and the workers are forked
  from it: faster start, shared memory pages.
* After building the app the master runs a full collection and ``gc.freeze()``: the tens of
  thousands of long-lived objects (rules, FHIR models, ValueSets) move to the permanent generation,
  so the collections a 2 MB request body triggers no longer traverse them (measured: ~50 ms of GC
  per Synthea request before, ~8 ms after), and forked workers do not dirty those pages by
  touching their GC headers.
"""

from __future__ import annotations

import gc
import os
import sys
from collections.abc import Callable, Mapping
from typing import Any

from gunicorn.app.base import BaseApplication

MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": "67108864", "MALLOC_TRIM_THRESHOLD_": "67108864"}


def reexec_with_malloc_env(module: str) -> None:
    """Re-execute ``python -m module <same arguments>`` with ``MALLOC_ENV`` unless it is set already.

    durable-rules allocates many small blocks; with these settings it runs ~1.7x faster.
    """
    if any(os.environ.get(k) != v for k, v in MALLOC_ENV.items()):
        os.execve(sys.executable, [sys.executable, "-m", module, *sys.argv[1:]], {**os.environ, **MALLOC_ENV})


def server_options(host: str, port: int, workers: int, threads: int) -> dict[str, Any]:
    return {
        "bind": f"{host}:{port}",
        "workers": workers,
        "threads": threads,
        "timeout": 60,
        # graceful shutdown: on SIGTERM workers stop accepting, finish in-flight requests (up to
        # graceful_timeout) and the master exits 0
        "graceful_timeout": 30,
        "accesslog": None,
        "preload_app": True,
    }


class PreloadedApp(BaseApplication):  # type: ignore[misc]
    """gunicorn running the WSGI app ``factory()`` builds once in the master, then frozen for the GC."""

    def __init__(
        self,
        factory: Callable[[], Any],
        options: Mapping[str, Any],
        after_fork: Callable[[Any], None] | None = None,
    ) -> None:
        self._factory = factory
        self._options = dict(options)
        self._after_fork = after_fork
        self.wsgi_app: Any = None
        super().__init__()

    def load_config(self) -> None:
        for key, value in {**self._options, "post_fork": self._post_fork}.items():
            self.cfg.set(key, value)

    def load(self) -> Any:
        if self.wsgi_app is None:
            self.wsgi_app = self._factory()
            gc.collect()
            gc.freeze()
        return self.wsgi_app

    def _post_fork(self, _arbiter: Any, _worker: Any) -> None:
        if self._after_fork is not None and self.wsgi_app is not None:
            self._after_fork(self.wsgi_app)
