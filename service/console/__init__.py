"""The web console at ``/console``: services, rule catalogue, try-it with sample patients, feedback rates."""
