"""An S3-compatible object store on loopback: versitygw (hack/provision s3server) serving a
plain directory, with generated root credentials and one bucket made at start.

versitygw is a real S3 server (SigV4 signatures, ListObjectsV2, multipart uploads), so the
archive is tested against the protocol it meets in production, not against a mock library.
"""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import TYPE_CHECKING

import httpx

from fraudpipe_testing import toolchain
from fraudpipe_testing.stack.process import free_port, spawn, wait_until
from fraudpipe_testing.stack.services.base import Running, generated_password

if TYPE_CHECKING:  # pyarrow only where the archive is installed
    from fraudpipe_common.archive.store import S3Settings

BUCKET = "fraudpipe"
REGION = "us-east-1"


class S3Service:
    name = "s3"

    def start(self, workdir: Path) -> Running:
        port = free_port()
        data = workdir / "data"
        # A bucket is a top-level directory of the posix backend: made here, it exists
        # before the first request (the archiver never creates buckets: least privilege).
        (data / BUCKET).mkdir(parents=True, exist_ok=True)
        access_key, secret_key = "fp" + secrets.token_hex(8), generated_password()
        argv = [
            str(toolchain.find("versitygw")),
            "--port", f"127.0.0.1:{port}",
            "--region", REGION,
            "--quiet",
            "posix", str(data),
        ]  # fmt: skip
        proc = spawn(
            self.name,
            argv,
            workdir / "versitygw.log",
            # Credentials through the environment, never on a command line `ps` shows.
            env={"ROOT_ACCESS_KEY_ID": access_key, "ROOT_SECRET_ACCESS_KEY": secret_key},
        )
        running = Running.of(
            self.name,
            [proc],
            {
                "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
                "AWS_REGION": REGION,
                "AWS_ACCESS_KEY_ID": access_key,
                "AWS_SECRET_ACCESS_KEY": secret_key,
                "S3_BUCKET": BUCKET,
            },
        )
        wait_until(lambda: self.healthy(running), what="s3 (versitygw)", proc=proc, timeout=30)
        return running

    def healthy(self, running: Running) -> bool:
        # Any HTTP answer means the gateway serves S3; an unsigned request is refused 403.
        try:
            response = httpx.get(f"{running.env['AWS_ENDPOINT_URL']}/{BUCKET}", timeout=2)
        except httpx.HTTPError:
            return False
        return response.status_code in (200, 403)


def s3_settings(env: dict[str, str]) -> S3Settings:
    """The archive's S3 settings for the server whose environment (`s3_env`) is given."""
    from pydantic import SecretStr

    from fraudpipe_common.archive.store import S3Settings

    return S3Settings(
        endpoint_url=env["AWS_ENDPOINT_URL"],
        region=env["AWS_REGION"],
        access_key_id=env["AWS_ACCESS_KEY_ID"],
        secret_access_key=SecretStr(env["AWS_SECRET_ACCESS_KEY"]),
    )
