"""The stack's configuration builders, checked without starting anything."""

from __future__ import annotations

from pathlib import Path

from fraudpipe_testing import toolchain
from fraudpipe_testing.stack.services.controlplane import KWOK_ANNOTATION, fake_node
from fraudpipe_testing.stack.services.kafka import server_properties
from fraudpipe_testing.stack.services.prometheus import prometheus_config


def test_versions_pin_every_provisioned_tool() -> None:
    pins = toolchain.versions()
    for key in (
        "KUBERNETES_VERSION",
        "ETCD_VERSION",
        "KWOK_VERSION",
        "HELM_VERSION",
        "KAFKA_VERSION",
        "LOG4J_VERSION",
        "UV_VERSION",
    ):
        assert pins[key], key
    assert pins["KUBERNETES_VERSION"].startswith("v1.")


def test_kafka_is_a_single_kraft_node_on_loopback() -> None:
    props = dict(
        line.split("=", 1) for line in server_properties(Path("/d"), 9092, 9093).splitlines()
    )
    assert props["process.roles"] == "broker,controller"
    assert props["controller.quorum.voters"] == "1@127.0.0.1:9093"
    assert props["advertised.listeners"] == "PLAINTEXT://127.0.0.1:9092"
    assert props["auto.create.topics.enable"] == "false"
    assert props["transaction.state.log.replication.factor"] == "1"


def test_prometheus_reads_targets_and_rules_from_folders() -> None:
    config = prometheus_config(9090, Path("/t"), Path("/r"))
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}  # type: ignore[attr-defined]
    assert jobs["file_sd"]["file_sd_configs"][0]["files"] == ["/t/*.json", "/t/*.yaml"]
    assert config["rule_files"] == ["/r/*.yml", "/r/*.yaml"]


def test_fake_nodes_are_marked_for_kwok_and_schedulable() -> None:
    node = fake_node("n0")
    assert node["metadata"]["annotations"][KWOK_ANNOTATION] == "fake"  # type: ignore[index]
    assert "spec" not in node  # no taints: ordinary pods must land on it
