"""Offline evaluation: FHIR Bundles, NDJSON exports and CDS Hooks request files, without a server."""
