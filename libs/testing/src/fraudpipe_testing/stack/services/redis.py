"""Redis with append-only persistence and a generated password."""

from __future__ import annotations

from pathlib import Path

import redis

from fraudpipe_testing import toolchain
from fraudpipe_testing.stack.process import free_port, spawn, wait_until
from fraudpipe_testing.stack.services.base import Running, generated_password


class RedisService:
    name = "redis"

    def start(self, workdir: Path) -> Running:
        port, password = free_port(), generated_password()
        (workdir / "data").mkdir(parents=True, exist_ok=True)
        conf = workdir / "redis.conf"
        conf.write_text(
            f"bind 127.0.0.1\nport {port}\ndir {workdir / 'data'}\nappendonly yes\n"
            f'save ""\nrequirepass {password}\nprotected-mode yes\ndaemonize no\n'
            # As the operator's Redis: big replay-record hashes expire without a pause.
            "lazyfree-lazy-expire yes\n"
        )
        conf.chmod(0o600)
        proc = spawn(
            self.name, [str(toolchain.find("redis-server")), str(conf)], workdir / "redis.log"
        )
        running = Running.of(
            self.name, [proc], {"REDIS_URL": f"redis://:{password}@127.0.0.1:{port}/0"}
        )
        wait_until(lambda: self.healthy(running), what="redis", proc=proc, timeout=30)
        return running

    def healthy(self, running: Running) -> bool:
        client = redis.Redis.from_url(running.env["REDIS_URL"], socket_timeout=2)
        try:
            return bool(client.ping())
        except redis.RedisError:
            return False
        finally:
            client.close()
