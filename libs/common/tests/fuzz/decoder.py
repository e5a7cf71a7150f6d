"""Coverage-guided fuzzing of the transactions.v1 decoder (atheris, libFuzzer's engine).

Every input must get one of two answers from both validators: accepted by the scorer's fast
decoder and by the pydantic model alike (with the same timestamp and amount), or refused by both
with their own error types. Anything else (another exception, a disagreement) is a finding and
stops the run with the input saved as `crash-*`.

    python libs/common/tests/fuzz/decoder.py CORPUS_DIR [-runs=N] [-max_total_time=S]
(`make fuzz` runs it for 10 minutes; libs/common/tests/test_decoder_fuzz.py for a few seconds.)
"""

from __future__ import annotations

import sys
from decimal import Decimal

import atheris

with atheris.instrument_imports():
    from pydantic import ValidationError

    from fraudpipe_common.contracts.transactions import (
        InvalidTransactionError,
        Transaction,
        decode_transaction,
    )


def one_input(data: bytes) -> None:
    refused = None
    try:
        fast = decode_transaction(data)
    except InvalidTransactionError as exc:
        refused, fast = exc.code, None
    if refused not in (None, "malformed_json", "not_an_object", "missing_field", "invalid_field"):
        raise AssertionError(f"a refusal without a DLQ code: {refused!r}")
    try:
        model = Transaction.model_validate_json(data)
    except ValidationError:
        model = None
    if (fast is None) != (model is None):
        # orjson and pydantic's JSON parser disagree on a few inputs that are not JSON objects
        # of strings at all (e.g. duplicate keys, lone surrogates); only disagreements about a
        # parsed object count.
        if fast is None and not _parses(data):
            return
        raise AssertionError(f"the validators disagree: fast={fast!r} model={model!r}")
    if fast is not None and model is not None:
        assert fast.ts == model.ts.timestamp(), (fast.ts, model.ts)
        assert Decimal(fast.amount_text) == model.amount, (fast.amount_text, model.amount)


def _parses(data: bytes) -> bool:
    import orjson

    try:
        return type(orjson.loads(data)) is dict
    except orjson.JSONDecodeError:
        return False


def main() -> None:
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
