"""The coverage-guided fuzzer of the decoder (fuzz/decoder.py) runs clean for a while, from a
corpus of valid and refused messages: no crash, no disagreement between the validators."""

from __future__ import annotations

import itertools
import re
import subprocess
import sys
from pathlib import Path

import orjson

from fraudpipe_common.synthetic import TrafficConfig, generate

FUZZER = Path(__file__).parent / "fuzz" / "decoder.py"


def test_the_decoder_fuzzer_finds_nothing(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for i, tx in enumerate(itertools.islice(generate(TrafficConfig(seed=3)), 20)):
        (corpus / f"valid-{i}").write_bytes(orjson.dumps(tx.message()))
    for i, seed in enumerate([b"{}", b"[]", b'{"amount": "1e9"}', b"\xff", b'{"ts": 1}']):
        (corpus / f"refused-{i}").write_bytes(seed)
    result = subprocess.run(
        [
            sys.executable,
            str(FUZZER),
            str(corpus),
            "-seed=1",
            "-max_total_time=20",
            "-max_len=512",
            f"-artifact_prefix={tmp_path}/",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    runs = re.search(r"Done (\d+) runs", result.stderr)
    assert runs is not None, result.stderr[-2000:]
    assert int(runs.group(1)) > 1000, result.stderr[-2000:]  # it really explored
    assert not list(tmp_path.glob("crash-*"))
