"""Performance benchmark harness (see bench/README.md)."""
