"""The API's clients: PostgreSQL pool, Redis, Kafka producer and the scoring model.

Each is opened on first use and again after a failure, so the API starts and answers (503
with Retry-After) while a dependency is down, and recovers by itself when it is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

import asyncpg
from aiokafka import AIOKafkaProducer
from redis.asyncio import Redis

from fraudpipe_api.config import ApiSettings
from fraudpipe_api.errors import DependencyUnavailable, dependency
from fraudpipe_common.contracts import transactions_avro
from fraudpipe_common.features import OnlineFeatureStore
from fraudpipe_common.inference import LoadedModel, load
from fraudpipe_common.kafka import KafkaSettings, TopicSettings
from fraudpipe_common.model_artifact import ModelArtifactError

log = logging.getLogger(__name__)

_MODEL_RETRY_S = 10.0


async def _keep_session(_: asyncpg.Connection) -> None:
    """The pool's reset on release, minus asyncpg's default reset query (advisory unlocks,
    CLOSE ALL, UNLISTEN, RESET ALL): the API never changes session state, and that query was
    a second round trip, and PostgreSQL work, for every request. asyncpg still rolls back a
    transaction left open."""


class Clients:
    def __init__(self, settings: ApiSettings, kafka: KafkaSettings) -> None:
        self.settings = settings
        self._kafka = kafka
        self._pool: asyncpg.Pool | None = None
        self._pool_lock = asyncio.Lock()
        self.redis: Redis = Redis.from_url(
            settings.redis_url,
            socket_timeout=settings.dependency_timeout_s,
            socket_connect_timeout=settings.dependency_timeout_s,
        )
        self.features = OnlineFeatureStore(self.redis, prefix=settings.redis_key_prefix)
        self._producer: AIOKafkaProducer | None = None
        self._producer_lock = asyncio.Lock()
        self._model: LoadedModel | None = None
        self._model_error: str | None = None
        self._model_tried_at = 0.0
        self._model_lock = asyncio.Lock()
        self._schema_id: int | None = None

    @property
    def retry_after_s(self) -> int:
        return self.settings.retry_after_s

    async def pool(self) -> asyncpg.Pool:
        if self._pool is not None:
            return self._pool
        async with self._pool_lock, dependency("postgres", self.retry_after_s):
            if self._pool is None:
                self._pool = await asyncio.wait_for(
                    asyncpg.create_pool(
                        self.settings.database_url,
                        min_size=1,
                        max_size=self.settings.db_pool_size,
                        command_timeout=self.settings.dependency_timeout_s,
                        # Timestamps PostgreSQL writes into JSON are in UTC, like the rest.
                        server_settings={"timezone": "UTC"},
                        reset=_keep_session,
                    ),
                    self.settings.dependency_timeout_s,
                )
            return self._pool

    async def producer(self) -> AIOKafkaProducer:
        if self._producer is not None:
            return self._producer
        async with self._producer_lock, dependency("kafka", self.retry_after_s):
            if self._producer is None:
                producer = AIOKafkaProducer(
                    **self._kafka.aiokafka(),
                    acks="all",
                    enable_idempotence=True,
                    linger_ms=2,
                    compression_type="lz4",
                    request_timeout_ms=int(self.settings.dependency_timeout_s * 1000),
                )
                try:
                    await asyncio.wait_for(producer.start(), self.settings.dependency_timeout_s)
                except BaseException:
                    with contextlib.suppress(Exception):
                        await producer.stop()
                    raise
                self._producer = producer
            return self._producer

    async def drop_producer(self) -> None:
        """After a failed send: the next request opens a fresh producer."""
        producer, self._producer = self._producer, None
        if producer is not None:
            with contextlib.suppress(Exception):
                await producer.stop()

    async def model(self) -> LoadedModel:
        if self._model is not None:
            return self._model
        if not self.settings.model_ref:
            raise DependencyUnavailable(
                "model", "MODEL_REF is not set, synchronous scoring is off", self.retry_after_s
            )
        async with self._model_lock:
            if self._model is None:
                if time.monotonic() - self._model_tried_at < _MODEL_RETRY_S and self._model_error:
                    raise DependencyUnavailable("model", self._model_error, self.retry_after_s)
                self._model_tried_at = time.monotonic()
                try:
                    self._model = await load(
                        self.settings.model_ref,
                        flag=self.settings.flag_threshold,
                        block=self.settings.block_threshold,
                        plain_http=self.settings.registry_plain_http,
                    )
                except (ModelArtifactError, OSError, RuntimeError) as exc:
                    self._model_error = str(exc) or type(exc).__name__
                    log.warning("model %s not loaded: %s", self.settings.model_ref, exc)
                    raise DependencyUnavailable(
                        "model", self._model_error, self.retry_after_s
                    ) from exc
            return self._model

    @property
    def loaded_model(self) -> LoadedModel | None:
        return self._model

    async def transactions_schema_id(self, topics: TopicSettings) -> int:
        """The id of transactions.v1's Avro schema, registered once per process."""
        if self._schema_id is None:
            timeout = self.settings.dependency_timeout_s
            async with topics.schema_registry(timeout_s=timeout) as registry:
                self._schema_id = await transactions_avro.register(
                    registry, topics.transactions_topic
                )
        return self._schema_id

    async def close(self) -> None:
        await self.drop_producer()
        if self._pool is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._pool.close(), 5)
        with contextlib.suppress(Exception):
            await self.redis.aclose()
