"""The children that write to `spec.objectStore`: the archiver (`fraudpipe-api archive`) and the
scheduled PostgreSQL backups (pg_dump, then `fraudpipe-api backup upload`)."""

from __future__ import annotations

from typing import Any

from fraudpipe_operator.builders.apps import (
    BACKUP_DEADLINE_S,
    app_container,
    cronjob,
    deployment,
    pod_template,
)
from fraudpipe_operator.builders.common import container_security, tmp_volume
from fraudpipe_operator.builders.connections import (
    common_env,
    kafka_ca_volume,
    kafka_env,
    object_store_env,
    object_store_uri,
    postgres_env,
    value,
)
from fraudpipe_operator.models import FraudPipeline
from fraudpipe_operator.models.v1alpha1 import ObjectStore

BACKUPS_PATH = ("backups", "postgres")
DUMP_DIR = "/backup"
DUMP_FILE = f"{DUMP_DIR}/fraudpipe.dump"
CONNINFO_DIR = "/conninfo"
SERVICE_FILE = f"{CONNINFO_DIR}/pg_service.conf"
# At SIGTERM the archiver writes every window it buffers before it leaves. Cut short, nothing is
# lost or repeated (the records are read again and what was written is found: decision 88), but
# the work is done twice; this leaves a slow store time to take the last uploads.
ARCHIVE_GRACE_SECONDS = 120


def object_store(pipeline: FraudPipeline) -> ObjectStore:
    store = pipeline.spec.object_store
    assert store is not None  # the CRD's CEL rules: archive and backup need it
    return store


# -- the archive ----------------------------------------------------------------------------------
def build_archive_deployment(pipeline: FraudPipeline) -> dict[str, Any]:
    """`fraudpipe-api archive` on the API's image, one replica. Recreate, not a rolling update:
    the old pod writes its windows and commits at SIGTERM, so the new one starts exactly there;
    overlapping, the two would rebalance the group and the new pod would read again what the
    old one had buffered. Kafka holds the records meanwhile, so the pause loses nothing."""
    archive = pipeline.spec.archive
    store = object_store(pipeline)
    env = [
        *kafka_env(pipeline),
        *common_env(pipeline),
        *object_store_env(store),
        value("ARCHIVE_URI", object_store_uri(store)),
        value("ARCHIVE_LABELS", str(archive.labels).lower()),
        value("ARCHIVE_CONSUMER_GROUP", f"{pipeline.name}-archive"),
        value("ARCHIVE_MAX_RECORDS", archive.max_records),
        value("ARCHIVE_MAX_WAIT_S", archive.max_wait_seconds),
    ]
    ca_volumes, ca_mounts = kafka_ca_volume(pipeline)
    tmp, tmp_mount = tmp_volume()
    container = app_container(
        "archive", pipeline.spec.api.image, env, archive.resources, [tmp_mount, *ca_mounts], {}
    )
    container["command"] = ["fraudpipe-api", "archive"]
    # The archiver serves nothing (no metrics port, no health endpoint): there is no signal
    # a probe could read, and a port that merely answers would say nothing of its progress.
    del container["readinessProbe"], container["livenessProbe"]
    config = [archive.model_dump(mode="json"), store.model_dump(mode="json")]
    template = pod_template(pipeline, "archive", container, [tmp, *ca_volumes], config)
    template["spec"]["terminationGracePeriodSeconds"] = ARCHIVE_GRACE_SECONDS
    archiver = deployment(pipeline, "archive", 1, template)
    archiver["spec"]["strategy"] = {"type": "Recreate"}
    return archiver


# -- PostgreSQL backups ---------------------------------------------------------------------------
def backup_image(pipeline: FraudPipeline) -> str:
    """pg_dump of the managed server's own image unless told otherwise: its version matches."""
    return pipeline.spec.backup.image or pipeline.spec.postgres.managed.image


def build_backup_cronjob(pipeline: FraudPipeline) -> dict[str, Any]:
    """Two steps in one pod, sharing an emptyDir: pg_dump (custom format, compressed) from a
    PostgreSQL image as an init container, then `fraudpipe-api backup upload` from the API's
    image, which runs only once the dump exited 0 and keeps the newest `keep` backups
    (decision 89). No image carries both tools, and none has to."""
    backup = pipeline.spec.backup
    store = object_store(pipeline)
    dump_volume = {"name": "dump", "emptyDir": {}}
    # The connection, password included, as a libpq service file on a memory-backed volume:
    # in pg_dump's arguments it would show in `ps` on the node.
    conninfo_volume = {"name": "conninfo", "emptyDir": {"medium": "Memory", "sizeLimit": "1Mi"}}
    conninfo = {
        "name": "conninfo",
        "image": pipeline.spec.api.image,
        "command": ["fraudpipe-api", "pg-service", "--out", SERVICE_FILE],
        "env": [*postgres_env(pipeline)],
        "resources": {"requests": {"cpu": "10m", "memory": "32Mi"}},
        "securityContext": container_security(),
        "volumeMounts": [{"name": "conninfo", "mountPath": CONNINFO_DIR}],
    }
    dump = {
        "name": "dump",
        "image": backup_image(pipeline),
        "command": ["pg_dump", "--format=custom", "--compress=6", f"--file={DUMP_FILE}"],
        "env": [value("PGSERVICEFILE", SERVICE_FILE), value("PGSERVICE", "fraudpipe")],
        "resources": {"requests": {"cpu": "50m", "memory": "64Mi"}},
        "securityContext": container_security(),
        "volumeMounts": [
            {"name": "dump", "mountPath": DUMP_DIR},
            {"name": "conninfo", "mountPath": CONNINFO_DIR, "readOnly": True},
        ],
    }
    upload = {
        "name": "upload",
        "image": pipeline.spec.api.image,
        "command": ["fraudpipe-api", "backup", "upload", DUMP_FILE],
        "env": [
            *common_env(pipeline),
            *object_store_env(store),
            value("BACKUP_URI", object_store_uri(store, *BACKUPS_PATH)),
            value("BACKUP_NAME", pipeline.name),
            value("BACKUP_KEEP", backup.keep),
        ],
        "resources": {"requests": {"cpu": "50m", "memory": "64Mi"}},
        "securityContext": container_security(),
        "volumeMounts": [{"name": "dump", "mountPath": DUMP_DIR, "readOnly": True}],
    }
    return cronjob(
        pipeline,
        "backup",
        backup.schedule,
        upload,
        deadline_s=BACKUP_DEADLINE_S,
        init_containers=[conninfo, dump],
        volumes=[dump_volume, conninfo_volume],
    )
