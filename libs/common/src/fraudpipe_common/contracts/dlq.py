"""`transactions.v1.dlq`: the original bytes of a rejected message, and why, in headers."""

from __future__ import annotations

from dataclasses import dataclass

ERROR_CODE = "error.code"
ERROR_DETAIL = "error.detail"
SOURCE_TOPIC = "source.topic"
SOURCE_PARTITION = "source.partition"
SOURCE_OFFSET = "source.offset"

# Every error code a rejection carries (the decoders' and the scorer's own), so that
# counters by code can start at zero: a rate needs a sample before the first rejection.
CODES = ("empty_value", "too_large", "malformed_json", "not_an_object", "missing_field",
         "invalid_field", "not_avro", "unknown_schema", "incompatible_schema",
         "malformed_avro")  # fmt: skip


@dataclass(frozen=True)
class Rejection:
    code: str
    detail: str
    topic: str
    partition: int
    offset: int

    def headers(self) -> list[tuple[str, bytes]]:
        return [
            (ERROR_CODE, self.code.encode()),
            (ERROR_DETAIL, _truncate_utf8(self.detail, 1024)),
            (SOURCE_TOPIC, self.topic.encode()),
            (SOURCE_PARTITION, str(self.partition).encode()),
            (SOURCE_OFFSET, str(self.offset).encode()),
        ]

    @classmethod
    def from_headers(
        cls, headers: list[tuple[str, bytes]] | tuple[tuple[str, bytes], ...]
    ) -> Rejection:
        found = {k: v.decode() for k, v in headers}
        return cls(
            found[ERROR_CODE],
            found[ERROR_DETAIL],
            found[SOURCE_TOPIC],
            int(found[SOURCE_PARTITION]),
            int(found[SOURCE_OFFSET]),
        )


def _truncate_utf8(text: str, limit: int) -> bytes:
    """At most `limit` bytes, cut on a character boundary so the header stays valid UTF-8."""
    return text.encode()[:limit].decode(errors="ignore").encode()
