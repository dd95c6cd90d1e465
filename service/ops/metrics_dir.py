"""Where gunicorn workers share their Prometheus samples (``PROMETHEUS_MULTIPROC_DIR``).

prometheus-client reads the variable once, when it is first imported, so it must be set before
anything imports ``service.ops.metrics`` or ``prometheus_client``: this module imports neither.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def prepare_multiprocess_dir() -> str | None:
    """Set the variable (a private temp dir if unset) and empty the directory of a previous run's samples.

    Refuses (RuntimeError) when prometheus_client is already imported: it would not see the variable.

    Returns the directory if this call created it (the caller removes it at exit: ``remove_private_dir``),
    else None (a directory the deployment chose stays; only its samples are cleared).
    """
    if "prometheus_client" in sys.modules:
        # too late: its counters would stay process-local and /metrics would be empty under gunicorn
        raise RuntimeError(
            "prometheus_client was imported before the metrics directory was prepared: "
            "an import at `spinecds serve` start pulls in service.ops.metrics too early"
        )
    created = None
    if not os.environ.get(MULTIPROC_ENV):
        created = tempfile.mkdtemp(prefix="spinecds-metrics-")
        os.environ[MULTIPROC_ENV] = created
    path = os.environ[MULTIPROC_ENV]
    os.makedirs(path, exist_ok=True)
    for name in os.listdir(path):
        if name.endswith(".db"):
            os.unlink(os.path.join(path, name))
    return created


def remove_private_dir(path: str | None, owner_pid: int) -> None:
    """Remove the temp dir ``prepare_multiprocess_dir`` created, in the process that created it only
    (forked workers inherit exit hooks)."""
    if path is not None and os.getpid() == owner_pid:
        shutil.rmtree(path, ignore_errors=True)
