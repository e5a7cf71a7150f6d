"""Apache Kafka in KRaft mode (one node acting as broker and controller), from Maven jars."""

from __future__ import annotations

import base64
import logging
import subprocess
import uuid
from pathlib import Path

from aiokafka.admin import AIOKafkaAdminClient

from fraudpipe_testing import toolchain
from fraudpipe_testing.stack.process import StackError, free_port, run_async, spawn, wait_until
from fraudpipe_testing.stack.services.base import Running

LOG4J2 = """\
status = warn
appender.out.type = Console
appender.out.name = OUT
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.out.ref = OUT
logger.state.name = state.change.logger
logger.state.level = WARN
"""


def server_properties(data: Path, port: int, controller_port: int) -> str:
    # Single node: every internal topic has replication factor 1, and topics are created
    # explicitly by whoever needs them, as in production.
    return f"""\
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:{controller_port}
listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}
advertised.listeners=PLAINTEXT://127.0.0.1:{port}
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs={data}
num.partitions=1
auto.create.topics.enable=false
offsets.topic.replication.factor=1
offsets.topic.num.partitions=4
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=4
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
"""


def java_command(home: Path, main: str, *args: str, heap: str = "1g") -> list[str]:
    return [
        str(toolchain.find("java")),
        f"-Xmx{heap}",
        # Kafka's own launcher settings (kafka-run-class.sh), as the cluster's broker image
        # runs: short G1 pauses, which otherwise stall every transaction at once.
        "-server",
        "-XX:+UseG1GC",
        "-XX:MaxGCPauseMillis=20",
        "-XX:InitiatingHeapOccupancyPercent=35",
        "-XX:+ExplicitGCInvokesConcurrent",
        "-Djava.awt.headless=true",
        f"-Dlog4j2.configurationFile=file:{home / 'log4j2.properties'}",
        "-cp",
        f"{home / 'libs'}/*",
        main,
        *args,
    ]


class KafkaService:
    name = "kafka"

    def start(self, workdir: Path) -> Running:
        kafka = toolchain.kafka_home()
        port, controller_port = free_port(), free_port()
        data = workdir / "data"
        data.mkdir(parents=True, exist_ok=True)
        (workdir / "log4j2.properties").write_text(LOG4J2)
        config = workdir / "server.properties"
        config.write_text(server_properties(data, port, controller_port))
        (workdir / "libs").unlink(missing_ok=True)
        (workdir / "libs").symlink_to(kafka / "libs")
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        fmt = subprocess.run(
            java_command(
                workdir,
                "kafka.tools.StorageTool",
                "format",
                # One argument: a generated id may start with "-", which argparse would take
                # for an option.
                f"--cluster-id={cluster_id}",
                "-c",
                str(config),
                heap="256m",
            ),
            capture_output=True,
            text=True,
            check=False,
        )
        if fmt.returncode != 0:
            raise StackError(f"kafka: storage format failed:\n{fmt.stdout}\n{fmt.stderr}")
        return self.restart(workdir, port)

    def restart(self, workdir: Path, port: int) -> Running:
        """Start the broker on a formatted data directory: again after it was killed, with its
        data and its port (tests of a broker's death)."""
        proc = spawn(
            self.name,
            java_command(workdir, "kafka.Kafka", str(workdir / "server.properties")),
            workdir / "kafka.log",
            env={"KAFKA_HEAP_OPTS": ""},
        )
        running = Running.of(self.name, [proc], {"KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{port}"})
        wait_until(
            lambda: self.healthy(running), what="kafka", proc=proc, timeout=120, interval=0.5
        )
        return running

    def healthy(self, running: Running) -> bool:
        return run_async(_broker_count(running.env["KAFKA_BOOTSTRAP_SERVERS"])) >= 1


async def _broker_count(bootstrap: str) -> int:
    # While the broker starts, aiokafka logs every refused connection as an error.
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=3000)
    try:
        await admin.start()
        cluster = await admin.describe_cluster()
        return len(cluster["brokers"])
    except Exception:  # any failure while the broker starts means "not yet"
        return 0
    finally:
        await admin.close()
