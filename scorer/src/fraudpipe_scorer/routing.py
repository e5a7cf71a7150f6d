"""Which model decides for which user: DESIGN.md §7.

Each user falls in a fixed bucket 0..99 (CRC-32 of the user id: stable across processes and
Python versions, unlike `hash()`), and buckets below the canary weight go to the candidate, so
a user stays with one model while the weight only grows. In shadow mode the stable model acts
for everyone and the candidate scores everything on the side. The weight can change at any
time (the control endpoint); the next batch uses it.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass


def bucket(user_id: str) -> int:
    return zlib.crc32(user_id.encode()) % 100


class RoutingError(ValueError):
    """A routing change that cannot apply, e.g. a weight without a candidate model."""


@dataclass(frozen=True, slots=True)
class Routing:
    weight: int = 0
    shadow: bool = False

    def to_candidate(self, user_id: str) -> bool:
        """Does the candidate's decision act for this user?"""
        return not self.shadow and self.weight > 0 and bucket(user_id) < self.weight


class Router:
    def __init__(self, *, has_candidate: bool, weight: int = 0, shadow: bool = False) -> None:
        self._has_candidate = has_candidate
        self._state = Routing()
        self.set(weight=weight, shadow=shadow)

    @property
    def state(self) -> Routing:
        return self._state

    def set(self, *, weight: int, shadow: bool) -> Routing:
        if not 0 <= weight <= 100:
            raise RoutingError(f"canary weight must be 0 to 100, got {weight}")
        if (weight or shadow) and not self._has_candidate:
            raise RoutingError(
                "no candidate model is loaded (CANARY_MODEL_REF is unset): weight must be 0 "
                "and shadow off"
            )
        self._state = Routing(weight, shadow)
        return self._state

    def to_candidate(self, user_id: str) -> bool:
        """Does the candidate's decision act for this user (at the current weight)?"""
        return self._state.to_candidate(user_id)

    @property
    def shadow(self) -> bool:
        return self._state.shadow
