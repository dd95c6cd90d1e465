"""CDS client authentication (JWT, CDS Hooks 2.0): see docs/security.md."""
