"""Which durable-rules build runs: the patched one from ``vendor/`` or the package index's.

durable-rules 2.0.28 as published frees an uninitialised pointer when a state is deleted
(docs/architecture.md): servers crash under load (SIGSEGV, "double free or corruption"). Our build
of it, ``vendor/durable_rules-2.0.28+spinecds.1.tar.gz``, carries the fix and says so in its version
(the local label ``+spinecds.N``). ``spinecds serve`` and ``create_app`` refuse to run any other build.
"""

from __future__ import annotations

from importlib import metadata

PATCH_LABEL = "+spinecds."
VENDORED_SDIST = "vendor/durable_rules-2.0.28+spinecds.1.tar.gz"


class UnpatchedEngineError(RuntimeError):
    """The installed durable-rules is not the patched build; the message names the fix."""


def engine_version() -> str:
    """The installed durable-rules version, e.g. ``2.0.28+spinecds.1``."""
    return metadata.version("durable-rules")


def engine_description(version: str | None = None) -> str:
    """For the start log: ``durable-rules 2.0.28+spinecds.1 (patched)``."""
    version = version or engine_version()
    return f"durable-rules {version} ({'patched' if PATCH_LABEL in version else 'UNPATCHED'})"


def require_patched_engine(version: str | None = None) -> str:
    """The installed version if it is the patched build; else ``UnpatchedEngineError`` saying how to install it."""
    version = version or engine_version()
    if PATCH_LABEL in version:
        return version
    raise UnpatchedEngineError(
        f"durable-rules {version} is installed, not the patched build spinecds needs (the published 2.0.28 "
        "crashes under load: SIGSEGV / double free in delete_state). Install the patched engine from the "
        f"repository: pip install --force-reinstall --no-deps {VENDORED_SDIST} (scripts/bootstrap and the "
        "Docker image do this; a plain 'pip install .' needs '--find-links vendor')"
    )
