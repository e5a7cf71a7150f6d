"""Schemathesis against a running API: requests generated from its OpenAPI schema, valid and
invalid, for every operation, checked for server errors. Shared by the API's own tests (local
services) and the end-to-end suite (the API Service in a cluster)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SCHEMATHESIS = Path(sys.executable).parent / "schemathesis"


def run_schemathesis(
    base_url: str, token: str, workdir: Path, *, max_examples: int, timeout_s: float
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            str(SCHEMATHESIS),
            "run",
            f"{base_url}/openapi.json",
            "--checks",
            "not_a_server_error",
            "--header",
            f"Authorization: Bearer {token}",
            "--max-examples",
            str(max_examples),
            "--seed",
            "1",
            # One worker: hypothesis reads lambda sources with ast.parse, which is not safe
            # across threads on Python 3.11 (SystemError: AST constructor recursion depth).
            "--workers",
            "1",
            "--generation-database",
            "none",
            "--report-dir",
            str(workdir / "report"),
            "--no-color",
        ],
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )
