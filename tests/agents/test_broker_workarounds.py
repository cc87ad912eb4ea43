"""The embedded-broker accommodations change only what their settings ask for."""

from __future__ import annotations

import faust
from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread

from pipemedic.tansu import apply_broker_workarounds
from streams.settings import Settings


def _worker_consumer(tmp_path):
    app = faust.App("probe", broker="kafka://127.0.0.1:1", datadir=str(tmp_path))
    thread = app.consumer._thread
    return thread._create_worker_consumer(app.transport)


async def test_the_fetch_wait_setting_reaches_the_worker_consumer(tmp_path):
    original = AIOKafkaConsumerThread._create_worker_consumer
    try:
        assert _worker_consumer(tmp_path)._fetch_max_wait_ms == 1500  # Faust's fixed wait
        settings = Settings(data_dir=tmp_path, broker_fetch_max_wait_ms=100)
        apply_broker_workarounds(settings)
        apply_broker_workarounds(settings)  # twice: still one wrapper, still 100
        assert _worker_consumer(tmp_path)._fetch_max_wait_ms == 100
    finally:
        AIOKafkaConsumerThread._create_worker_consumer = original


def test_no_setting_no_change(tmp_path):
    original = AIOKafkaConsumerThread._create_worker_consumer
    apply_broker_workarounds(Settings(data_dir=tmp_path))
    assert AIOKafkaConsumerThread._create_worker_consumer is original
