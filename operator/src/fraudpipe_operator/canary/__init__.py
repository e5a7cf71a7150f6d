"""Canary rollouts of a candidate model (DESIGN.md §7, docs/canary.md).

`analysis` judges one window of per-model statistics, `machine` decides what the rollout does
next, both pure; `stats` reads the statistics (the scorer pods' /metrics or Prometheus),
`validate` checks the candidate artifact, and `driver` does the I/O around them.
"""
