"""The real node's images and configuration, checked without starting anything."""

from __future__ import annotations

import io
import json
import os
import tarfile
from pathlib import Path

import pytest

from fraudpipe_testing.stack.node_images import Layer, docker_archive
from fraudpipe_testing.stack.services import node
from fraudpipe_testing.stack.services.node import (
    BRIDGE,
    DNS_SERVICE_IP,
    NODE_IP,
    cluster_objects,
    cni_config,
    corefile,
)


def test_docker_archive_is_reproducible_and_names_its_image(tmp_path: Path) -> None:
    program = tmp_path / "prog"
    program.write_bytes(b"\x7fELF-not-really")
    layer = Layer(files={"bin/prog": program}, symlinks={"bin/alias": "prog"})
    first = docker_archive("localhost/fraudpipe/x:1", layer, ["/bin/prog"])
    assert first == docker_archive("localhost/fraudpipe/x:1", layer, ["/bin/prog"])
    with tarfile.open(fileobj=io.BytesIO(first)) as tar:
        manifest = json.loads(tar.extractfile("manifest.json").read())  # type: ignore[union-attr]
        assert manifest[0]["RepoTags"] == ["localhost/fraudpipe/x:1"]
        config = json.loads(tar.extractfile(manifest[0]["Config"]).read())  # type: ignore[union-attr]
        assert config["config"]["Entrypoint"] == ["/bin/prog"]
        layer_tar = tar.extractfile(manifest[0]["Layers"][0]).read()  # type: ignore[union-attr]
    with tarfile.open(fileobj=io.BytesIO(layer_tar)) as inner:
        members = {m.name: m for m in inner.getmembers()}
    assert members["bin"].isdir()
    assert members["bin/prog"].mode == 0o755
    assert members["bin/alias"].issym()
    assert members["bin/alias"].linkname == "prog"


def test_pods_get_no_masquerade_and_the_node_address_as_gateway(tmp_path: Path) -> None:
    bridge = cni_config(tmp_path)["plugins"][0]
    assert bridge["bridge"] == BRIDGE
    assert bridge["ipMasq"] is False
    assert bridge["ipam"]["ranges"][0][0]["gateway"] == NODE_IP


def test_cluster_dns_serves_only_the_cluster_domain(tmp_path: Path) -> None:
    conf = corefile(tmp_path / "kubeconfig", 1, 2)
    assert f"bind {NODE_IP}" in conf
    assert "kubernetes cluster.local" in conf
    assert "forward" not in conf
    kinds = {body["kind"]: body for _, body in cluster_objects(tmp_path, "busybox:test")}
    assert kinds["Service"]["spec"]["clusterIP"] == DNS_SERVICE_IP
    assert kinds["EndpointSlice"]["endpoints"][0]["addresses"] == [NODE_IP]
    annotations = kinds["StorageClass"]["metadata"]["annotations"]
    assert annotations["storageclass.kubernetes.io/is-default-class"] == "true"


def test_the_machine_has_one_node_cluster_owner_while_it_lives(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(node, "OWNER_FILE", tmp_path / "node-cluster.json")
    mine, theirs = tmp_path / "a" / "node", tmp_path / "b" / "node"
    assert node.machine_owner() is None
    node._claim_machine(theirs, os.getpid())
    assert node.machine_owner() == theirs
    node._release_machine(mine)  # not mine to release
    assert node.machine_owner() == theirs
    node._release_machine(theirs)
    assert node.machine_owner() is None
    node._claim_machine(theirs, 2**22 + 1)  # beyond pid_max: a dead owner
    assert node.machine_owner() is None
