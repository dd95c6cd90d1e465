"""Memory a large request used goes back to the operating system once its answer is sent.

A 17 MB body is ~40,000 resources, ~1 million Python objects: the worker's RSS doubles while it is
read (~90 -> ~180 MiB). Freeing the objects returns them to Python's and glibc's free lists, not to the
system: ``spinecds serve`` runs glibc with ``MALLOC_TRIM_THRESHOLD_`` at 64 MiB (``service/serving.py``:
durable-rules runs faster with it), so the heap kept its peak for good, in every worker that ever
read a large body (issue 20: ~347 MiB per worker). ``release_free_memory`` calls glibc's
``malloc_trim(0)`` (free pages anywhere in the heap go back, a few milliseconds), and the CDS service
call runs it after the answer of a body of at least ``TRIM_AFTER_BYTES`` has been sent (by then the
parsed body and the raw bytes are freed: ``strict_json`` does not cache the body). Elsewhere (musl, macOS)
it does nothing.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable

TRIM_AFTER_BYTES = 4_000_000  # bodies this large leave megabytes of free heap behind; smaller ones are not worth it


def _malloc_trim() -> Callable[[int], int] | None:
    try:
        trim: Callable[[int], int] = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):  # not glibc
        return None
    return trim


_TRIM = _malloc_trim()


def release_free_memory() -> bool:
    """Give the C heap's free pages back to the system; True if any were (False where unsupported)."""
    return bool(_TRIM(0)) if _TRIM is not None else False
