"""The fraudpipe API: alerts, decisions, scoring and analyst feedback over HTTP."""
