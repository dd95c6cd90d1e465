"""Conformance tooling: our FHIR profiles as checks, and ``spinecds validate``."""
