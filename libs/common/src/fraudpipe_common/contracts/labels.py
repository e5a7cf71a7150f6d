"""Ground truth from the producer: which transactions were injected fraud, and of what kind.

Labels never travel on the scored topic; they go to a separate topic or a JSON-lines file and
serve evaluation and training only.
"""

from __future__ import annotations

import orjson
from pydantic import BaseModel, ConfigDict


class Label(BaseModel):
    model_config = ConfigDict(frozen=True)

    tx_id: str
    is_fraud: bool
    scenario: str | None = None

    def to_json(self) -> bytes:
        return orjson.dumps(self.model_dump(mode="json"))
