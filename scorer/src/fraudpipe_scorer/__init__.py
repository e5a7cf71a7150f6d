"""The fraudpipe scorer: consumes transactions.v1 and emits APPROVE/FLAG/BLOCK decisions."""
