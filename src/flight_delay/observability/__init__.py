"""Prometheus metrics: the multiprocess set-up (importable before prometheus_client) and the instruments."""
