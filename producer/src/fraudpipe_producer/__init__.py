"""The fraudpipe producer: synthetic and replayed traffic for transactions.v1."""
