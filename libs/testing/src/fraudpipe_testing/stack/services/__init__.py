"""One module per service of the local stack; each knows how to start itself, wait until it
is really ready, and check its health later."""
