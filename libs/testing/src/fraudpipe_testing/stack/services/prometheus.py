"""Prometheus scraping itself and whatever targets tests drop into its file_sd folder."""

from __future__ import annotations

from pathlib import Path

import httpx
import yaml

from fraudpipe_testing import toolchain
from fraudpipe_testing.stack.process import free_port, spawn, wait_until
from fraudpipe_testing.stack.services.base import Running


def prometheus_config(port: int, targets: Path, rules: Path) -> dict[str, object]:
    # Short intervals so tests see scrapes and rule evaluations within seconds.
    return {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(rules / "*.yml"), str(rules / "*.yaml")],
        "scrape_configs": [
            {"job_name": "prometheus", "static_configs": [{"targets": [f"127.0.0.1:{port}"]}]},
            {
                "job_name": "file_sd",
                "file_sd_configs": [
                    {
                        "files": [str(targets / "*.json"), str(targets / "*.yaml")],
                        "refresh_interval": "1s",
                    }
                ],
            },
        ],
    }


class PrometheusService:
    name = "prometheus"

    def start(self, workdir: Path) -> Running:
        port = free_port()
        targets, rules = workdir / "targets", workdir / "rules"
        for folder in (targets, rules, workdir / "data"):
            folder.mkdir(parents=True, exist_ok=True)
        config = workdir / "prometheus.yml"
        config.write_text(yaml.safe_dump(prometheus_config(port, targets, rules)))
        proc = spawn(
            self.name,
            [
                str(toolchain.find("prometheus")),
                f"--config.file={config}",
                f"--storage.tsdb.path={workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--web.enable-lifecycle",
                "--storage.tsdb.retention.time=1d",
            ],
            workdir / "prometheus.log",
        )
        running = Running.of(
            self.name,
            [proc],
            {
                "PROMETHEUS_URL": f"http://127.0.0.1:{port}",
                "PROMETHEUS_TARGETS_DIR": str(targets),
                "PROMETHEUS_RULES_DIR": str(rules),
            },
        )
        wait_until(lambda: self.healthy(running), what="prometheus", proc=proc, timeout=60)
        return running

    def healthy(self, running: Running) -> bool:
        try:
            return (
                httpx.get(f"{running.env['PROMETHEUS_URL']}/-/ready", timeout=2).status_code == 200
            )
        except httpx.HTTPError:
            return False
