"""Read-only FHIR endpoints: the rule base as PlanDefinitions."""
