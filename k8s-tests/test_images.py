"""The container images of hack/images: built, non-root, and working on a read-only root.

Each image is run by runc the way a kubelet runs it under the restricted Pod Security Standard
(read-only root filesystem, the image's numeric non-root user, no capabilities), with only the
writable mounts the operator's pods give it.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from images_harness import (
    HACK_IMAGES,
    Volume,
    image_config,
    image_ref,
    image_user,
    run_image,
    run_to_completion,
    wait_for,
)

pytestmark = [
    pytest.mark.images,
    pytest.mark.skipif(os.geteuid() != 0, reason="buildah and runc need root here"),
    # The first test also builds every image: minutes when cold (docs/development.md).
    pytest.mark.timeout(3600),
]

SERVICES = {
    "operator": "fraudpipe-operator",
    "scorer": "fraudpipe-scorer",
    "api": "fraudpipe-api",
    "producer": "fraudpipe-produce",
}
STATEFUL = ["kafka", "postgres", "redis", "registry", "s3"]
# The in-cluster end-to-end check of `skaffold verify` (k8s-tests/e2e/Dockerfile).
E2E = "e2e"
# The uid each image runs as: the services as the operator's pods expect (APP_UID, the chart),
# the stateful ones as their official images do.
EXPECTED_UID = {
    **dict.fromkeys(SERVICES, 10001),
    E2E: 10001,
    "kafka": 1000,
    "postgres": 999,
    "redis": 999,
    "registry": 1000,
    "s3": 1000,
}


@pytest.fixture(scope="session")
def built_images() -> None:
    """Every image, built once per session (a no-op when nothing they are made of changed)."""
    subprocess.run([str(HACK_IMAGES), "build", "all"], check=True, timeout=3600)


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.mark.usefixtures("built_images")
@pytest.mark.parametrize("name", [*SERVICES, *STATEFUL, E2E])
def test_image_runs_as_its_numeric_non_root_user(name: str, tmp_path: Path) -> None:
    ref = image_ref(name)
    uid, gid = image_user(image_config(ref))
    assert (uid, gid) == (EXPECTED_UID[name], EXPECTED_UID[name])
    code, output = run_to_completion(
        ref, tmp_path, command=["/bin/sh", "-c", "id -u; id -g; touch /probe || echo read-only"]
    )
    assert code == 0, output
    # stdout and stderr come through separate pipes: compare lines, not their order.
    numbers = [line for line in output.splitlines() if line.isdigit()]
    assert numbers == [str(uid), str(gid)], output
    assert "Read-only file system" in output, output


@pytest.mark.usefixtures("built_images")
@pytest.mark.parametrize("name", SERVICES)
def test_service_console_script_answers_help_on_a_read_only_root(name: str, tmp_path: Path) -> None:
    # No writable mount at all, not even /tmp: importing the service must write nothing.
    code, output = run_to_completion(image_ref(name), tmp_path, args=["--help"])
    assert code == 0, output
    assert f"usage: {SERVICES[name]}" in output
    # onnxruntime's telemetry is off (it would warn that it cannot persist a device id here).
    assert "telemetry" not in output


@pytest.mark.usefixtures("built_images")
def test_e2e_image_answers_help_and_carries_a_model_but_not_its_trainer(tmp_path: Path) -> None:
    code, output = run_to_completion(image_ref(E2E), tmp_path, args=["--help"])
    assert code == 0, output
    assert "usage: fraudpipe-e2e" in output
    check = (
        "import importlib.util as u, json;"
        " from fraudpipe_common.model_artifact import read_model_dir;"
        " from pathlib import Path;"
        " print(read_model_dir(Path('/opt/fraudpipe-e2e/model')).card.family);"
        " print([m for m in ('kubernetes', 'aiokafka', 'sklearn') if u.find_spec(m)])"
    )
    code, output = run_to_completion(image_ref(E2E), tmp_path, command=["python", "-c", check])
    assert code == 0, output
    assert "gradient_boosting" in output
    # The seed pushes the model, the checks need kubernetes and aiokafka; training stayed in
    # the build stage.
    assert "['kubernetes', 'aiokafka']" in output


@pytest.mark.usefixtures("built_images")
def test_service_images_hold_only_the_runtime_venv_with_its_package_data(tmp_path: Path) -> None:
    # The migrate Job reads the SQL migrations and the scorer the Lua script from the installed
    # (not editable) packages; neither uv nor the sources are shipped.
    check = (
        "from importlib import resources; import fraudpipe_scorer;"
        " print(fraudpipe_scorer.__file__);"
        " m = resources.files('fraudpipe_common.migrations');"
        " print(sorted(f.name for f in m.iterdir() if f.name.endswith('.sql'))[0]);"
        " print(resources.files('fraudpipe_common.features').joinpath('online.lua').is_file())"
    )
    code, output = run_to_completion(
        image_ref("scorer"),
        tmp_path,
        command=["/bin/sh", "-c", f'test ! -e /opt/uv && test ! -e /src && python -c "{check}"'],
    )
    assert code == 0, output
    assert "/app/.venv/lib/python3.11/site-packages/fraudpipe_scorer/" in output
    assert "0001_" in output
    assert "True" in output


@pytest.mark.usefixtures("built_images")
def test_postgres_initialises_an_empty_data_dir_from_the_environment(tmp_path: Path) -> None:
    import asyncpg

    password, port = secrets.token_hex(12), free_port()
    env = {
        "POSTGRES_USER": "fraudpipe",
        "POSTGRES_PASSWORD": password,
        "POSTGRES_DB": "fraudpipe",
        "PGDATA": "/var/lib/postgresql/data/pgdata",
    }
    volumes = [
        Volume("/var/lib/postgresql/data", tmp_path / "pgdata"),
        Volume("/var/run/postgresql"),
        Volume("/tmp"),
    ]
    # Loopback only: the container shares the host's network.
    args = ["postgres", "-c", "listen_addresses=127.0.0.1", "-p", str(port)]

    async def query(sql: str, pw: str = password) -> object:
        conn = await asyncpg.connect(
            host="127.0.0.1", port=port, user="fraudpipe", password=pw, database="fraudpipe"
        )
        try:
            return await conn.fetchval(sql)
        finally:
            await conn.close()

    ref = image_ref("postgres")
    with run_image(ref, tmp_path, args=args, env=env, volumes=volumes) as pg:
        user = wait_for(lambda: asyncio.run(query("SELECT current_user")), "postgres", pg, 90)
        assert user == "fraudpipe"
        asyncio.run(query("CREATE TABLE kept AS SELECT 42 AS n"))
        with pytest.raises(asyncpg.InvalidPasswordError):
            asyncio.run(query("SELECT 1", pw="wrong"))
        ready = subprocess.run(
            ["runc", "exec", pg.id, "pg_isready", "-U", "fraudpipe", "-d", "fraudpipe",
             "-p", str(port)],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        assert ready.returncode == 0, ready.stdout + ready.stderr
        assert "initialising" in pg.output()

    # A restart on the same data keeps it and initialises nothing.
    with run_image(ref, tmp_path, args=args, env=env, volumes=volumes) as pg:
        kept = wait_for(lambda: asyncio.run(query("SELECT n FROM kept")), "postgres", pg, 90)
        assert kept == 42
        assert "initialising" not in pg.output()


@pytest.mark.usefixtures("built_images")
def test_scorer_image_migrates_the_postgres_image_database(tmp_path: Path) -> None:
    # What the operator's migration Job does: `fraudpipe-scorer migrate` with DATABASE_URL.
    import asyncpg

    password, port = secrets.token_hex(12), free_port()
    env = {"POSTGRES_USER": "fraudpipe", "POSTGRES_PASSWORD": password, "POSTGRES_DB": "fraudpipe"}
    volumes = [
        Volume("/var/lib/postgresql/data", tmp_path / "pgdata"),
        Volume("/var/run/postgresql"),
        Volume("/tmp"),
    ]
    url = f"postgresql://fraudpipe:{password}@127.0.0.1:{port}/fraudpipe"

    async def tables() -> list[str]:
        conn = await asyncpg.connect(url)
        try:
            rows = await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
            return [row["tablename"] for row in rows]
        finally:
            await conn.close()

    args = ["postgres", "-c", "listen_addresses=127.0.0.1", "-p", str(port)]
    with run_image(image_ref("postgres"), tmp_path, args=args, env=env, volumes=volumes) as pg:
        wait_for(lambda: asyncio.run(tables()) is not None, "postgres", pg, 90)
        code, output = run_to_completion(
            image_ref("scorer"),
            tmp_path,
            command=["fraudpipe-scorer", "migrate"],
            env={"DATABASE_URL": url},
            volumes=[Volume("/tmp")],
        )
        assert code == 0, output
        assert "schema up to date" in output
        assert "alerts" in asyncio.run(tables())


@pytest.mark.usefixtures("built_images")
def test_postgres_refuses_to_initialise_without_a_password(tmp_path: Path) -> None:
    code, output = run_to_completion(
        image_ref("postgres"),
        tmp_path,
        volumes=[
            Volume("/var/lib/postgresql/data", tmp_path / "pgdata"),
            Volume("/var/run/postgresql"),
        ],
    )
    assert code != 0
    assert "POSTGRES_PASSWORD is not set" in output


@pytest.mark.usefixtures("built_images")
def test_redis_answers_ping_with_the_password_from_its_arguments(tmp_path: Path) -> None:
    import redis

    password, port = secrets.token_hex(12), free_port()
    # The operator's arguments, and a loopback-only bind since the network is the host's.
    args = ["--requirepass", password, "--dir", "/data", "--appendonly", "yes",
            "--port", str(port), "--bind", "127.0.0.1"]  # fmt: skip
    volumes = [Volume("/data", tmp_path / "redis"), Volume("/tmp")]
    with run_image(image_ref("redis"), tmp_path, args=args, volumes=volumes) as server:
        client = redis.Redis(host="127.0.0.1", port=port, password=password)
        assert wait_for(client.ping, "redis", server, 30) is True
        with pytest.raises(redis.AuthenticationError):
            redis.Redis(host="127.0.0.1", port=port, password="wrong").ping()
        client.close()


@pytest.mark.usefixtures("built_images")
def test_kafka_starts_a_single_kraft_node_and_creates_a_topic(tmp_path: Path) -> None:
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    port, controller = free_port(), free_port()
    env = {
        "KAFKA_NODE_ID": "1",
        "KAFKA_PROCESS_ROLES": "broker,controller",
        "KAFKA_LISTENERS": f"PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller}",
        "KAFKA_ADVERTISED_LISTENERS": f"PLAINTEXT://127.0.0.1:{port}",
        "KAFKA_CONTROLLER_LISTENER_NAMES": "CONTROLLER",
        "KAFKA_LISTENER_SECURITY_PROTOCOL_MAP": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
        "KAFKA_CONTROLLER_QUORUM_VOTERS": f"1@127.0.0.1:{controller}",
        "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR": "1",
        "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR": "1",
        "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR": "1",
        "KAFKA_LOG_DIRS": "/var/lib/kafka/data",
        "KAFKA_HEAP_OPTS": "-Xmx384M",
    }
    volumes = [Volume("/var/lib/kafka/data", tmp_path / "kafka"), Volume("/tmp")]

    async def create_and_list() -> set[str]:
        admin = AIOKafkaAdminClient(bootstrap_servers=f"127.0.0.1:{port}", request_timeout_ms=5000)
        await admin.start()
        try:
            await admin.create_topics([NewTopic("transactions.v1", 3, 1)])
            return set(await admin.list_topics())
        finally:
            await admin.close()

    with run_image(image_ref("kafka"), tmp_path, env=env, volumes=volumes) as broker:
        topics = wait_for(lambda: asyncio.run(create_and_list()), "kafka", broker, 120)
        assert "transactions.v1" in topics
        # The environment became server.properties (log.dirs from KAFKA_LOG_DIRS).
        config = subprocess.run(
            ["runc", "exec", broker.id, "cat", "/tmp/kafka-config/server.properties"],
            capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
        assert "log.dirs=/var/lib/kafka/data" in config
        assert "controller.quorum.voters=1@127.0.0.1:" in config


@pytest.mark.usefixtures("built_images")
def test_registry_serves_the_distribution_api(tmp_path: Path) -> None:
    port = free_port()
    volumes = [Volume("/var/lib/registry", tmp_path / "registry")]
    env = {"REGISTRY_HTTP_ADDR": f"127.0.0.1:{port}"}
    with run_image(image_ref("registry"), tmp_path, env=env, volumes=volumes) as registry:

        def v2() -> httpx.Response | None:
            response = httpx.get(f"http://127.0.0.1:{port}/v2/", timeout=2)
            return response if response.status_code == 200 else None

        response = wait_for(v2, "registry", registry, 30)
        assert response.headers["docker-distribution-api-version"] == "registry/2.0"


@pytest.mark.usefixtures("built_images")
def test_s3_serves_signed_requests_on_the_buckets_it_was_told_to_make(tmp_path: Path) -> None:
    import pyarrow.fs as pafs
    from pydantic import SecretStr

    from fraudpipe_common.archive.store import S3Settings

    port = free_port()
    access_key, secret_key = "fp" + secrets.token_hex(8), secrets.token_urlsafe(24)
    env = {
        "S3_ADDRESS": f"127.0.0.1:{port}",
        "S3_BUCKETS": "archive backups",
        "ROOT_ACCESS_KEY_ID": access_key,
        "ROOT_SECRET_ACCESS_KEY": secret_key,
    }
    volumes = [Volume("/data", tmp_path / "s3")]
    with run_image(image_ref("s3"), tmp_path, env=env, volumes=volumes) as server:
        url = f"http://127.0.0.1:{port}"
        unsigned = wait_for(lambda: httpx.get(f"{url}/archive", timeout=2), "s3", server, 30)
        assert unsigned.status_code == 403  # anonymous requests are refused
        settings = S3Settings(
            endpoint_url=url,
            region="us-east-1",
            access_key_id=access_key,
            secret_access_key=SecretStr(secret_key),
        )
        filesystem = settings.filesystem()
        with filesystem.open_output_stream("backups/probe.bin") as out:
            out.write(b"PGDMP probe")
        with filesystem.open_input_stream("backups/probe.bin") as stream:
            assert stream.read() == b"PGDMP probe"
        # The other bucket exists (made at start) and is empty.
        assert filesystem.get_file_info(pafs.FileSelector("archive", recursive=True)) == []


def test_hack_images_names_each_image_under_localhost_fraudpipe() -> None:
    refs = {name: image_ref(name) for name in [*SERVICES, *STATEFUL]}
    assert refs["scorer"] == "localhost/fraudpipe/scorer:dev"
    assert all(ref.startswith("localhost/fraudpipe/") for ref in refs.values())
    tagged = subprocess.run(
        [str(HACK_IMAGES), "ref", "api"],
        env={**os.environ, "FRAUDPIPE_IMAGE_TAG": "abc123"},
        check=True, capture_output=True, text=True,
    ).stdout.strip()  # fmt: skip
    assert tagged == "localhost/fraudpipe/api:abc123"


def test_service_dockerfiles_pin_the_provisioned_uv() -> None:
    versions = dict(
        line.split("=", 1)
        for line in (HACK_IMAGES.parent / "versions.env").read_text().splitlines()
        if "=" in line and not line.startswith("#")
    )
    for name in SERVICES:
        dockerfile = (HACK_IMAGES.parents[1] / name / "Dockerfile").read_text()
        assert f"ARG UV_VERSION={versions['UV_VERSION']}\n" in dockerfile, name
        assert "ARG BASE_IMAGE=python:3.11-slim\n" in dockerfile, name
        assert f"uv sync --frozen --no-dev --no-editable --package fraudpipe-{name}" in dockerfile


@pytest.mark.usefixtures("built_images")
def test_export_writes_an_archive_containerd_imports_under_the_images_reference(
    tmp_path: Path,
) -> None:
    export = [str(HACK_IMAGES), "export", "redis"]
    archive = Path(
        subprocess.run(export, check=True, capture_output=True, text=True).stdout.strip()
    )
    written = archive.stat().st_mtime_ns
    # Exporting an unchanged image again reuses the archive.
    again = subprocess.run(export, check=True, capture_output=True, text=True).stdout.strip()
    assert again == str(archive)
    assert archive.stat().st_mtime_ns == written

    containerd = shutil.which("containerd")
    if containerd is None:
        pytest.skip("containerd is not installed (hack/provision node installs it)")
    # A private containerd (own root, state and socket, no CRI): what a node's import does.
    socket = tmp_path / "containerd.sock"
    config = tmp_path / "config.toml"
    config.write_text(
        f'version = 2\nroot = "{tmp_path}/root"\nstate = "{tmp_path}/state"\n'
        'disabled_plugins = ["io.containerd.grpc.v1.cri"]\n'
        f'[grpc]\n  address = "{socket}"\n'
    )
    with (tmp_path / "containerd.log").open("wb") as log:
        daemon = subprocess.Popen([containerd, "--config", str(config)], stdout=log, stderr=log)
    try:
        ctr = ["ctr", "--address", str(socket), "--namespace", "k8s.io"]
        deadline = time.monotonic() + 30
        while subprocess.run([*ctr, "version"], capture_output=True).returncode != 0:
            assert time.monotonic() < deadline, (tmp_path / "containerd.log").read_text()
            time.sleep(0.3)
        subprocess.run([*ctr, "images", "import", str(archive)], check=True, capture_output=True)
        names = subprocess.run(
            [*ctr, "images", "ls", "--quiet"], check=True, capture_output=True, text=True
        ).stdout.split()
        assert image_ref("redis") in names
    finally:
        daemon.terminate()
        daemon.wait(timeout=30)
        subprocess.run(["umount", "--recursive", str(tmp_path / "root")], capture_output=True)
