"""Development-only support: the local stack manager (real Kafka, Redis, PostgreSQL, Prometheus,
OCI registry and Kubernetes control plane on loopback) and the pytest fixtures built on it."""
