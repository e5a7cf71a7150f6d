"""The decision rules live in libs/common (`fraudpipe_common.rules`), shared with the API."""

from fraudpipe_common.rules import RuleSettings, Thresholds, decide

__all__ = ["RuleSettings", "Thresholds", "decide"]
