"""Metrics (Prometheus) and structured logs of the gateway."""
