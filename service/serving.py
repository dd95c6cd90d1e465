"""The production WSGI server: gunicorn with the options ``spinecds serve`` runs under.

One definition, used by ``spinecds serve`` and by the benchmark's floor and naive apps
(``bench/serve.py``), so a comparison differs only in the app.

* glibc allocator settings (``MALLOC_ENV``) are read only at process start: ``reexec_with_malloc_env``
  re-executes the process once with them unless they are already set (the Docker image sets them).
* ``service.serving_worker.BufferingWorker`` workers (waitress's event loop in each forked worker:
  request heads and bodies are read without tying up a thread, so slow clients cannot starve the
  workers; docs/security.md); the app is built once in the master (``preload_app``) and the workers
  are forked from it: faster start, shared memory pages.
* The collector is off while the master imports and builds the app (``pause_gc_until_frozen``).
  After building the app the master calls ``gc.freeze()``: the ~110,000 long-lived objects (rules,
  FHIR models, ValueSets) move to the permanent generation, so the collections a 2 MB request body
  triggers no longer traverse them (measured in process: ~50 ms of GC per Synthea request before,
  ~8 ms after), and forked workers do not dirty those pages by touching their GC headers.
"""

from __future__ import annotations

import gc
import os
import sys
from collections.abc import Callable, Mapping
from typing import Any

# MALLOC_ARENA_MAX=1: the request threads allocate from the one heap malloc_trim() can give back after a large
# body (service/memory_return.py); a thread's own arena keeps its top for good under a 64 MiB trim threshold
MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": "67108864", "MALLOC_TRIM_THRESHOLD_": "67108864", "MALLOC_ARENA_MAX": "1"}


def reexec_with_malloc_env(module: str) -> None:
    """Re-execute ``python -m module <same arguments>`` with ``MALLOC_ENV`` unless it is set already.

    durable-rules allocates many small blocks; with these settings it runs ~1.7x faster.
    """
    if any(os.environ.get(k) != v for k, v in MALLOC_ENV.items()):
        os.execve(sys.executable, [sys.executable, "-m", module, *sys.argv[1:]], {**os.environ, **MALLOC_ENV})


def pause_gc_until_frozen() -> None:
    """No garbage collection while the master imports and builds the app: ``preloaded_app`` freezes what
    was built and turns the collector back on. Startup makes ~110,000 long-lived objects and no cyclic
    garbage worth collecting; the full collections they triggered traversed all of them (~0.1-0.2 s of
    every cold start, measured on 2 cores)."""
    gc.disable()


def server_options(host: str, port: int, workers: int, threads: int) -> dict[str, Any]:
    return {
        "bind": f"{host}:{port}",
        "workers": workers,
        "threads": threads,
        "worker_class": "service.serving_worker.BufferingWorker",
        "timeout": 60,
        # graceful shutdown: on SIGTERM workers stop accepting, finish in-flight requests (up to
        # graceful_timeout) and the master exits 0
        "graceful_timeout": 30,
        "accesslog": None,
        "preload_app": True,
    }


def preloaded_app(
    factory: Callable[[], Any], options: Mapping[str, Any], after_fork: Callable[[Any], None] | None = None
) -> Any:
    """A gunicorn application (``.run()`` serves) for the WSGI app ``factory()`` builds once in the
    master, frozen for the GC. gunicorn is imported here: the process ``spinecds serve`` re-executes
    from should start fast."""
    from gunicorn.app.base import BaseApplication

    class PreloadedApp(BaseApplication):  # type: ignore[misc]
        def __init__(self) -> None:
            self.wsgi_app: Any = None
            super().__init__()

        def load_config(self) -> None:
            for key, value in {**options, "post_fork": self._post_fork}.items():
                self.cfg.set(key, value)

        def load(self) -> Any:
            if self.wsgi_app is None:
                self.wsgi_app = factory()
                gc.freeze()  # no collect first: startup leaves no cyclic garbage worth 0.1 s of start
                gc.enable()  # off since pause_gc_until_frozen
            return self.wsgi_app

        def _post_fork(self, _arbiter: Any, _worker: Any) -> None:
            if after_fork is not None and self.wsgi_app is not None:
                after_fork(self.wsgi_app)

    return PreloadedApp()
