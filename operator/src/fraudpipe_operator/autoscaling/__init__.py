"""Autoscaling of the scorer on consumer lag (DESIGN.md §8).

`decision` is pure: the formula, the partition cap and the stabilization windows. `keda` builds
the ScaledObject of the keda engine. `scaler` does the I/O: it reads the lag through the Kafka
admin API, scales the Deployment under its own field manager, and applies or removes KEDA's
objects.
"""
