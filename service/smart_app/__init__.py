"""The SMART on FHIR app that records what the cards ask for (docs/smart-app.md)."""
