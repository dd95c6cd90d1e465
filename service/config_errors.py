"""The environment prefix and the configuration error: a leaf that imports nothing from ``service``.

Every module that parses a configuration value (``service.config``, the issuers file, the fhirServer
allowlist, the rule base) raises ``ConfigError`` from here, so none of them imports ``service.config``
back (``tests/test_import_graph.py`` keeps the package free of import circles).
"""

from __future__ import annotations

PREFIX = "SPINECDS_"


class ConfigError(ValueError):
    """A configuration value is invalid; the message names the variable."""
