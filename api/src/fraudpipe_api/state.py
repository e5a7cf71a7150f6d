"""What every request handler reaches through `request.app.state.fraudpipe`."""

from __future__ import annotations

from dataclasses import dataclass, field

from fraudpipe_api.auth import KeyRing
from fraudpipe_api.config import ApiSettings
from fraudpipe_api.deps import Clients
from fraudpipe_api.metrics import ApiMetrics
from fraudpipe_api.queries import AlertJsonCache
from fraudpipe_api.throttle import AuthThrottle
from fraudpipe_common.kafka import TopicSettings
from fraudpipe_common.rules import RuleSettings


@dataclass
class AppState:
    settings: ApiSettings
    topics: TopicSettings
    rules: RuleSettings
    keys: KeyRing
    throttle: AuthThrottle
    clients: Clients
    metrics: ApiMetrics
    alert_json: AlertJsonCache = field(default_factory=AlertJsonCache)
