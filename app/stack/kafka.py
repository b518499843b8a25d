"""Apache Kafka, one broker in KRaft mode (combined broker + controller), from Maven Central jars."""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from pathlib import Path

from app.config import PROJECT_ROOT
from app.stack.base import Service, StackError, tcp_open

POM = PROJECT_ROOT / "app" / "stack" / "maven" / "kafka-pom.xml"


def resolve_jars(settings) -> Path:
    """Download (once) the broker jars for ``settings.kafka_version`` into the cache; return the folder."""
    target = settings.cache_dir / "jars" / f"kafka-{settings.kafka_version}"
    marker = target / ".complete"
    if marker.exists():
        return target
    mvn = shutil.which("mvn")
    if not mvn:
        raise StackError("Maven (mvn) is needed to fetch the Kafka jars: run `make setup`")
    target.mkdir(parents=True, exist_ok=True)
    cmd = [
        mvn, "-q", "-B", "-f", str(POM), "dependency:copy-dependencies",
        f"-Dkafka.version={settings.kafka_version}",
        f"-Dmaven.repo.local={settings.cache_dir / 'm2'}",
        f"-DoutputDirectory={target}",
    ]
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise StackError(f"resolving Kafka {settings.kafka_version} jars failed:\n{(result.stdout + result.stderr)[-1500:]}")
    marker.touch()
    return target


class Kafka(Service):
    name = "kafka"
    start_timeout = 90.0

    @property
    def home(self) -> Path:
        return self.settings.state_dir / "kafka"

    @property
    def config_file(self) -> Path:
        return self.home / "server.properties"

    def ports(self) -> list[int]:
        return [self.settings.kafka_port, self.settings.kafka_controller_port]

    @property
    def address(self) -> str:
        return f"{self.settings.bind_host}:{self.settings.kafka_port}"

    def _java(self) -> str:
        java = shutil.which("java", path=os.path.join(os.environ.get("JAVA_HOME", ""), "bin") + os.pathsep + os.environ.get("PATH", ""))
        if not java:
            raise StackError("Java 17+ is needed for Kafka: run `make setup`")
        return java

    def _classpath(self) -> str:
        return str(resolve_jars(self.settings) / "*")

    def _write_config(self) -> None:
        s = self.settings
        host = s.bind_host
        self.config_file.write_text(
            "\n".join(
                [
                    "process.roles=broker,controller",
                    "node.id=1",
                    f"controller.quorum.voters=1@{host}:{s.kafka_controller_port}",
                    f"listeners=PLAINTEXT://{host}:{s.kafka_port},CONTROLLER://{host}:{s.kafka_controller_port}",
                    f"advertised.listeners=PLAINTEXT://{host}:{s.kafka_port}",
                    "controller.listener.names=CONTROLLER",
                    "inter.broker.listener.name=PLAINTEXT",
                    "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
                    f"log.dirs={self.home / 'data'}",
                    f"num.partitions={s.kafka_partitions}",
                    "offsets.topic.replication.factor=1",
                    "transaction.state.log.replication.factor=1",
                    "transaction.state.log.min.isr=1",
                    "share.coordinator.state.topic.replication.factor=1",
                    "share.coordinator.state.topic.min.isr=1",
                    "group.initial.rebalance.delay.ms=0",
                    "auto.create.topics.enable=false",
                    "message.max.bytes=1048588",
                    "num.network.threads=2",
                    "num.io.threads=4",
                    "log.retention.check.interval.ms=300000",
                    "",
                ]
            )
        )

    def prepare(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        self._write_config()
        if (self.home / "data" / "meta.properties").exists():
            return
        cluster_id = uuid.uuid4().hex[:22]
        cmd = [
            self._java(), "-Xmx256m", "-cp", self._classpath(), "kafka.tools.StorageTool", "format",
            "-t", cluster_id, "-c", str(self.config_file),
        ]
        result = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise StackError(f"formatting Kafka storage failed:\n{(result.stdout + result.stderr)[-1500:]}")

    def command(self) -> list[str]:
        heap = f"{self.settings.kafka_heap_mb}m"
        return [
            self._java(), f"-Xms{heap}", f"-Xmx{heap}", "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20",
            "-XX:MaxMetaspaceSize=128m", "-XX:ReservedCodeCacheSize=64m", "-Xss512k",
            "-Djava.awt.headless=true", "-Dorg.slf4j.simpleLogger.defaultLogLevel=info",
            "-Dsfmlops.service=kafka",
            "-cp", self._classpath(), "kafka.Kafka", str(self.config_file),
        ]

    def expected_cmd_fragment(self) -> str:
        return "-Dsfmlops.service=kafka"

    def healthy(self) -> bool:
        from kafka import KafkaAdminClient

        if not tcp_open(self.settings.bind_host, self.settings.kafka_port):
            return False  # not listening yet: skip the client's noisy bootstrap retries
        admin = KafkaAdminClient(bootstrap_servers=self.address, request_timeout_ms=10000, client_id="sfmlops-health")
        try:
            return isinstance(admin.list_topics(), list)
        finally:
            admin.close()
