"""Seeded synthetic payment traffic with labelled fraud scenarios.

Shared by the producer (which sends it to Kafka) and the model (which trains on it), so that
both see exactly the same world for the same seed.
"""

from fraudpipe_common.synthetic.generator import GeneratedTransaction, TrafficConfig, generate
from fraudpipe_common.synthetic.population import Population, PopulationConfig

__all__ = ["GeneratedTransaction", "Population", "PopulationConfig", "TrafficConfig", "generate"]
