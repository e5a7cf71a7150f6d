"""Shared code for every fraudpipe service: data contracts, feature definitions, the model
artifact format and thin Kafka/Redis/Postgres/OCI helpers. Depends on no service."""
