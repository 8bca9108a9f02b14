"""Prometheus metrics, Kubernetes Events and structured logs of the operator."""
