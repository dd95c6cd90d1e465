"""The OpenAPI 3 document of the CDS Hooks endpoints, served at ``GET /openapi.json``."""
