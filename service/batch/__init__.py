"""Batch commands over files, without a server: ``spinecds evaluate``, ``spinecds rules`` and ``spinecds coverage``
(FHIR Bundles, NDJSON exports, case files and CDS Hooks request files)."""
