"""Validating transactions.v1 messages: the scorer's fast decoder against the pydantic model.

Both must accept the same messages and return the same values (checked before timing);
`orjson.loads` alone is shown as the floor.

    uv run python bench/bench_decode.py [--count 200000]
"""

from __future__ import annotations

import argparse
import itertools
import time
from collections.abc import Callable

import orjson

from fraudpipe_common.contracts.transactions import Transaction, decode_transaction
from fraudpipe_common.synthetic import TrafficConfig, generate


def best_of(runs: int, work: Callable[[], None]) -> float:
    timings = []
    for _ in range(runs):
        start = time.perf_counter()
        work()
        timings.append(time.perf_counter() - start)
    return min(timings)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=200_000)
    args = parser.parse_args()
    payloads = [
        orjson.dumps(g.message()) for g in itertools.islice(generate(TrafficConfig()), args.count)
    ]
    for data in payloads[:2000]:  # same verdicts and values from both validators
        fast, model = decode_transaction(data), Transaction.model_validate_json(data)
        assert (fast.tx_id, fast.amount_text, fast.ts) == (
            model.tx_id,
            str(model.amount),
            model.ts.timestamp(),
        )

    # As the scorer does: micro-batches of 500 decoded, used, then dropped.
    batches = [payloads[i : i + 500] for i in range(0, len(payloads), 500)]

    def per_batch(decode: Callable[[bytes], object]) -> Callable[[], None]:
        def work() -> None:
            for batch in batches:
                [decode(d) for d in batch]

        return work

    variants = {
        "orjson.loads only (floor)": per_batch(orjson.loads),
        "decode_transaction (scorer)": per_batch(decode_transaction),
        "Transaction.model_validate_json": per_batch(Transaction.model_validate_json),
    }
    for work in variants.values():
        work()  # warm-up
    print("| validator | µs per message | messages/s |\n|---|---|---|")
    for name, work in variants.items():
        seconds = best_of(3, work)
        print(f"| {name} | {seconds / args.count * 1e6:.2f} | {args.count / seconds:,.0f} |")


if __name__ == "__main__":
    main()
