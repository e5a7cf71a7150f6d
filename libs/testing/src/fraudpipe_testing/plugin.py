"""pytest fixtures over the real services of the local stack.

Each service is taken from the environment when its settings are there (a stack started with
`hack/stack up` and loaded with `eval "$(hack/stack env)"`, or your own servers), and otherwise
started for the test session in a scratch directory and stopped at its end. Every test gets
its own topic, database, key prefix, repository or namespace, so tests never see each other.

A KUBECONFIG is used only with FRAUDPIPE_TEST_KUBECONFIG=1 (which `hack/stack env` sets), so
that a developer's real cluster is never touched by accident.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest
import redis
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from fraudpipe_testing.stack import Stack
from fraudpipe_testing.stack.process import run_async

ENV_OF = {
    "kafka": ("KAFKA_BOOTSTRAP_SERVERS",),
    "redis": ("REDIS_URL",),
    "postgres": ("DATABASE_URL",),
    "prometheus": ("PROMETHEUS_URL",),
    "registry": ("OCI_REGISTRY",),
    "s3": ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "S3_BUCKET"),
    "schema-registry": ("SCHEMA_REGISTRY_URL",),
    "controlplane": ("KUBECONFIG",),
}


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


class StackProvider:
    """Hands out each service's settings, starting only the services a session needs."""

    def __init__(self) -> None:
        self._stack: Stack | None = None
        self._root: Path | None = None

    def settings(self, service: str) -> dict[str, str]:
        keys = ENV_OF[service]
        from_env = all(os.environ.get(k) for k in keys)
        if service == "controlplane":
            from_env = from_env and os.environ.get("FRAUDPIPE_TEST_KUBECONFIG") == "1"
        if from_env:
            return {k: os.environ[k] for k in keys} | _extra_env(service)
        if self._stack is None:
            self._root = Path(tempfile.mkdtemp(prefix="fraudpipe-test-stack-", dir="/tmp"))
            self._stack = Stack(self._root)
        return self._stack.up([service])

    def close(self) -> None:
        if self._stack is not None and self._root is not None:
            self._stack.down()
            if not os.environ.get("FRAUDPIPE_KEEP_STACK"):
                shutil.rmtree(self._root, ignore_errors=True)


def _extra_env(service: str) -> dict[str, str]:
    optional = {
        "prometheus": ("PROMETHEUS_TARGETS_DIR", "PROMETHEUS_RULES_DIR"),
        "s3": ("AWS_REGION",),
    }
    return {k: os.environ[k] for k in optional.get(service, ()) if k in os.environ}


@pytest.fixture(scope="session")
def local_stack() -> Iterator[StackProvider]:
    provider = StackProvider()
    try:
        yield provider
    finally:
        provider.close()


# -- Kafka ------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def kafka_bootstrap(local_stack: StackProvider) -> str:
    return local_stack.settings("kafka")["KAFKA_BOOTSTRAP_SERVERS"]


@pytest.fixture
def kafka_topic(kafka_bootstrap: str) -> Iterator[Callable[..., str]]:
    """Factory: `kafka_topic(partitions=3)` creates a uniquely named topic, deleted after."""
    created: list[str] = []

    async def admin_call(action: Callable[[AIOKafkaAdminClient], object]) -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
        await admin.start()
        try:
            await action(admin)  # type: ignore[misc]
        finally:
            await admin.close()

    def create(partitions: int = 1, prefix: str = "test") -> str:
        name = unique(prefix)
        topic = NewTopic(name=name, num_partitions=partitions, replication_factor=1)
        run_async(admin_call(lambda admin: admin.create_topics([topic])))
        created.append(name)
        return name

    yield create
    if created:
        run_async(admin_call(lambda admin: admin.delete_topics(created)))


# -- Redis ------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def redis_url(local_stack: StackProvider) -> str:
    return local_stack.settings("redis")["REDIS_URL"]


@pytest.fixture
def redis_prefix(redis_url: str) -> Iterator[str]:
    """A key prefix owned by one test; every key under it is removed afterwards."""
    prefix = unique("test") + ":"
    yield prefix
    client = redis.Redis.from_url(redis_url)
    try:
        keys = list(client.scan_iter(match=prefix + "*", count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


# -- PostgreSQL ---------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def postgres_server_url(local_stack: StackProvider) -> str:
    return local_stack.settings("postgres")["DATABASE_URL"]


@pytest.fixture
def database_url(postgres_server_url: str) -> Iterator[str]:
    """A fresh, empty database for one test, dropped afterwards."""
    name = unique("test").replace("-", "_")
    parts = urlsplit(postgres_server_url)
    admin_url = urlunsplit(parts._replace(path="/postgres"))

    async def execute(sql: str) -> None:
        conn = await asyncpg.connect(admin_url)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    run_async(execute(f'CREATE DATABASE "{name}"'))
    yield urlunsplit(parts._replace(path=f"/{name}"))
    run_async(execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


# -- Prometheus ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class PrometheusSettings:
    url: str
    targets_dir: Path | None
    rules_dir: Path | None


@pytest.fixture(scope="session")
def prometheus(local_stack: StackProvider) -> PrometheusSettings:
    env = local_stack.settings("prometheus")
    targets, rules = env.get("PROMETHEUS_TARGETS_DIR"), env.get("PROMETHEUS_RULES_DIR")
    return PrometheusSettings(
        url=env["PROMETHEUS_URL"],
        targets_dir=Path(targets) if targets else None,
        rules_dir=Path(rules) if rules else None,
    )


# -- OCI registry -------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def oci_registry(local_stack: StackProvider) -> str:
    return local_stack.settings("registry")["OCI_REGISTRY"]


@pytest.fixture
def oci_repository() -> str:
    """A repository name used by one test only."""
    return f"fraudpipe-test/{uuid.uuid4().hex[:10]}"


# -- S3 ----------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def s3_env(local_stack: StackProvider) -> dict[str, str]:
    """AWS_ENDPOINT_URL, AWS_REGION, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and S3_BUCKET
    (a bucket that exists) of an S3-compatible server."""
    return {"AWS_REGION": "us-east-1"} | local_stack.settings("s3")


@pytest.fixture
def s3_archive_uri(s3_env: dict[str, str]) -> Iterator[str]:
    """`s3://bucket/prefix` owned by one test; every object under it is removed afterwards."""
    import pyarrow.fs as pafs

    from fraudpipe_testing.stack.services.s3 import s3_settings

    prefix = unique("test")
    yield f"s3://{s3_env['S3_BUCKET']}/{prefix}"
    settings = s3_settings(s3_env)
    # Files first, then the emptied directories deepest first: a posix-backed server (as
    # versitygw) refuses to delete a directory before its contents, which a batch delete of
    # the whole prefix at once may try.
    fs = settings.filesystem()
    root = f"{s3_env['S3_BUCKET']}/{prefix}"
    found = fs.get_file_info(pafs.FileSelector(root, recursive=True, allow_not_found=True))
    for info in found:
        if info.type == pafs.FileType.File:
            fs.delete_file(info.path)
    directories = [i.path for i in found if i.type == pafs.FileType.Directory]
    for path in sorted([*directories, root], key=len, reverse=True):
        with contextlib.suppress(OSError):  # already gone with its last object
            fs.delete_dir(path)


# -- Schema registry ---------------------------------------------------------------------------
@pytest.fixture(scope="session")
def schema_registry_url(local_stack: StackProvider) -> str:
    """Base URL of a Confluent-compatible schema registry's REST API (Apicurio's, ending in
    /apis/ccompat/v7): `{url}/subjects/{subject}/versions`, `{url}/schemas/ids/{id}`, …
    Its storage is shared by the session: give each test its own subjects (`unique`)."""
    return local_stack.settings("schema-registry")["SCHEMA_REGISTRY_URL"]


# -- Kubernetes ---------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def kubeconfig(local_stack: StackProvider) -> str:
    return local_stack.settings("controlplane")["KUBECONFIG"]


@pytest.fixture(scope="session")
def kube_client(kubeconfig: str) -> Iterator[object]:
    """A `kubernetes.client.ApiClient` for the test cluster (admin credentials)."""
    from kubernetes import config

    client = config.new_client_from_config(config_file=kubeconfig)  # type: ignore[no-untyped-call]
    yield client
    client.close()


@pytest.fixture
def k8s_namespace(kube_client: object) -> Iterator[str]:
    """A namespace owned by one test, deleted afterwards."""
    from kubernetes import client

    core = client.CoreV1Api(kube_client)
    name = unique("test")
    labels = {"fraudpipe.io/test": "true"}
    core.create_namespace(
        client.V1Namespace(metadata=client.V1ObjectMeta(name=name, labels=labels))
    )
    yield name
    core.delete_namespace(name, propagation_policy="Background")


# -- A real node (hack/cluster) ---------------------------------------------------------------
@dataclass(frozen=True)
class NodeCluster:
    """A single-node cluster with real pods. `stack` is set when this session started it (and
    so may stop it); a cluster loaded from `hack/cluster env` is never stopped by tests."""

    kubeconfig: str
    stack: Stack | None


@pytest.fixture(scope="module")
def node_cluster() -> Iterator[NodeCluster]:
    """The cluster of `hack/cluster` when FRAUDPIPE_NODE_KUBECONFIG is set or it runs;
    otherwise one started for the test module in a scratch folder (root only) and stopped at
    its end: one node cluster fits on a machine, so none is held longer than its tests."""
    if kubeconfig := os.environ.get("FRAUDPIPE_NODE_KUBECONFIG"):
        yield NodeCluster(kubeconfig, None)
        return
    if os.geteuid() != 0:
        pytest.skip("a real node needs root (containerd, bridge, iptables); run as root")
    from fraudpipe_testing.stack.cluster_cli import cluster
    from fraudpipe_testing.stack.services.node import machine_owner

    # A developer's running `hack/cluster` is used as is.
    developers = cluster()
    if developers.status()["node"] == "healthy":
        yield NodeCluster(developers.env()["KUBECONFIG"], None)
        return
    # A dead cluster's leftovers (its bridge, chains) are cleared by `up` itself.
    if (owner := machine_owner()) is not None:
        pytest.skip(f"another node cluster runs on this machine, from {owner.parent}")

    root = Path(tempfile.mkdtemp(prefix="fraudpipe-test-cluster-", dir="/tmp"))
    stack = cluster(root)
    try:
        env = stack.up()
        yield NodeCluster(env["KUBECONFIG"], stack)
    finally:
        stack.down()
        if not os.environ.get("FRAUDPIPE_KEEP_STACK"):
            shutil.rmtree(root, ignore_errors=True)
