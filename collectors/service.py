"""The collector process (``control-center collect``): MQTT in, batched transactions out.

paho's network thread only enqueues (a bounded :class:`Inbox`: when the database falls behind,
``on_message`` blocks, which stops reading the socket and lets the broker hold the backlog).
The writer (the thread that calls :func:`run`) takes batches, applies each in one transaction
and only then acknowledges its messages, in arrival order. A message is therefore acknowledged
only once it is durably stored or durably dead-lettered; anything else is redelivered by the
broker from our persistent session, and duplicates are harmless (``event_id``).
"""

from __future__ import annotations

import logging
import os
import queue
import struct
import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from collectors.ingest import BatchResult, Ingestor
from collectors.metrics import CollectorMetrics
from collectors.validation import PROCESSING_ERROR
from collectors.worker import IngestorProcess, Received, inbound, is_retryable
from control_center.settings import Settings

log = logging.getLogger("collector")

HEARTBEAT_S = 5.0
SUMMARY_S = 60.0
MAX_BACKOFF_S = 10.0
KINDS = ("dossier", "queue", "status")


class Inbox:
    """The bounded queue between paho's thread and the writer.

    A ``queue.Queue`` takes its lock and notifies a condition on every put and every get; a
    ``SimpleQueue`` (C) with a size check costs a fraction of that per message, and the writer
    takes a whole batch at once. Still bounded: with ``maxsize`` messages held, :meth:`put`
    waits (paho's thread stops reading the socket: back-pressure to the broker) until the
    writer takes some. One producer, paho's thread, so the bound is exact.
    """

    def __init__(self, maxsize: int) -> None:
        self.maxsize = maxsize
        self._items: queue.SimpleQueue[Received] = queue.SimpleQueue()
        self._room = threading.Event()  # set by the writer after taking messages

    def qsize(self) -> int:
        return self._items.qsize()

    def full(self) -> bool:
        return self._items.qsize() >= self.maxsize

    def put(self, item: Received, stop: threading.Event) -> bool:
        """Enqueue, waiting while full; False (not enqueued) if stop was requested meanwhile."""
        items = self._items
        while items.qsize() >= self.maxsize:
            if stop.is_set():
                return False
            self._room.clear()
            if items.qsize() < self.maxsize:  # the writer took some before the clear
                break
            self._room.wait(0.5)
        items.put(item)
        return True

    def take(self, size: int, wait_s: float, fill_s: float) -> list[Received]:
        """Up to ``size`` messages: waits ``wait_s`` for the first, then up to ``fill_s`` for
        the batch to fill."""
        items = self._items
        try:
            batch = [items.get(timeout=wait_s) if wait_s > 0 else items.get_nowait()]
        except queue.Empty:
            return []
        deadline = time.monotonic() + fill_s
        try:
            while len(batch) < size:
                try:
                    batch.append(items.get_nowait())  # a backlog: no waiting per message
                    continue
                except queue.Empty:
                    pass
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._room.set()
                try:
                    batch.append(items.get(timeout=left))
                except queue.Empty:
                    break
        finally:
            self._room.set()
        return batch


# PUBACK (MQTT 3.1.1 and 5: fixed header, remaining length 2, packet id; no reason code means
# success). ``Client.ack`` queues one packet per message and wakes paho's thread once per
# message: for a batch of 2,000 that was 2,000 wake-up writes, each a switch of the
# interpreter lock between the writer and paho's thread. :func:`send_pubacks` queues the
# batch's acknowledgements as one write, in arrival order, through the same paho method
# ``Client.ack`` uses (private, hence the fallback if a paho release renames it).
_PUBACK = struct.Struct("!BBH")
PUBACK = 0x40


def send_pubacks(client: mqtt.Client, mids: Sequence[int]) -> None:
    queue_packet = getattr(client, "_packet_queue", None)
    if queue_packet is None:
        for mid in mids:
            client.ack(mid, 1)
        return
    pack = _PUBACK.pack
    queue_packet(PUBACK, b"".join([pack(PUBACK, 2, mid) for mid in mids]), 0, 0)


def subscriptions(settings: Settings) -> list[str]:
    prefix = f"$share/{settings.mqtt_shared_group}/" if settings.mqtt_shared_group else ""
    province = "+" if settings.national else settings.province  # CC_SCOPE=national: all 34
    return [f"{prefix}dvc/v1/{province}/+/{kind}" for kind in KINDS]


class Collector:
    def __init__(
        self,
        settings: Settings,
        ingestor: Ingestor | IngestorProcess,
        metrics: CollectorMetrics,
        stop: threading.Event,
    ) -> None:
        self.settings = settings
        self.ingestor = ingestor
        self.metrics = metrics
        self.stop = stop
        self.inbox = Inbox(settings.collector_queue_max)
        # Bumped on every connection: a packet id is only meaningful on the connection that
        # delivered it, so acks of an earlier connection are dropped (the broker redelivers).
        self.generation = 0
        self.connected = False
        self.subscribed = threading.Event()  # set once the broker accepted our subscriptions
        self.totals = BatchResult()
        self.client = self._make_client()
        self._next_beat = self._next_summary = 0.0  # monotonic times
        self._submitted_at = 0.0  # when the batch being stored went to the ingest process

    # --- MQTT side (paho's thread) -------------------------------------------------------

    def _make_client(self) -> mqtt.Client:
        s = self.settings
        v5 = s.mqtt_protocol == "5"
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=s.mqtt_client_id,
            protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311,
            clean_session=None if v5 else False,
            manual_ack=True,
        )
        target = s.mqtt_parts()
        if target.username:
            client.username_pw_set(target.username, target.password)
        if target.tls:
            client.tls_set(**target.tls_options())
        client.reconnect_delay_set(min_delay=1, max_delay=30)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_subscribe = self._on_subscribe
        return client

    def connect(self) -> None:
        s = self.settings
        target = s.mqtt_parts()
        if s.mqtt_protocol == "5":
            props = Properties(PacketTypes.CONNECT)
            props.SessionExpiryInterval = s.mqtt_session_expiry_s
            self.client.connect_async(
                target.host, target.port, keepalive=30, clean_start=False, properties=props
            )
        else:
            self.client.connect_async(target.host, target.port, keepalive=30)
        self.client.loop_start()

    # Every callback catches everything: an exception escaping it kills paho's loop thread.

    def _on_connect(self, client: mqtt.Client, _u: Any, flags: Any, reason: Any, _p: Any) -> None:
        try:
            if reason.is_failure:
                log.warning("broker refused connection", extra={"reason": str(reason)})
                return
            self.generation += 1
            self.connected = True
            self.metrics.connected.set(1)
            client.subscribe([(t, 1) for t in subscriptions(self.settings)])
            log.info(
                "connected",
                extra={
                    "session_present": flags.session_present,
                    "broker": self.settings.mqtt_parts(),
                },
            )
        except Exception:
            log.exception("on_connect failed")

    def _on_subscribe(self, _c: mqtt.Client, _u: Any, _mid: int, codes: Any, _p: Any) -> None:
        try:
            failed = [str(c) for c in codes if c.is_failure]
            if failed:
                log.error("subscription refused", extra={"reasons": ",".join(failed)})
            else:
                log.info("subscribed", extra={"generation": self.generation})
                self.subscribed.set()
        except Exception:
            log.exception("on_subscribe failed")

    def _on_disconnect(self, _c: mqtt.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        try:
            self.connected = False
            self.subscribed.clear()
            self.metrics.connected.set(0)
            if not self.stop.is_set():
                log.warning("disconnected from broker", extra={"reason": str(reason)})
        except Exception:
            log.exception("on_disconnect failed")

    def _on_message(self, _c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        # The least work per message: references and a clock reading (the ingest process
        # decodes and checks). Blocking in put is the back-pressure: the broker keeps what
        # we cannot take yet. A message dropped on stop was not acked: it is redelivered.
        try:
            self.inbox.put(
                (
                    msg._topic,
                    bytes(msg.payload),  # the same object: paho's payload is bytes already
                    time.time(),
                    self.generation,
                    msg.mid,
                    msg.qos,
                    msg.retain,
                ),
                self.stop,
            )
        except Exception:
            log.exception("on_message failed")

    # --- writer side ---------------------------------------------------------------------

    def take_batch(self, wait_s: float, fill_s: float | None = None) -> list[Received]:
        """Up to a batch of messages: waits ``wait_s`` for the first one, then up to ``fill_s``
        (``collector_batch_seconds`` by default) for the batch to fill."""
        if fill_s is None:
            fill_s = self.settings.collector_batch_seconds
        return self.inbox.take(self.settings.collector_batch_size, wait_s, fill_s)

    def _process(self, batch: Sequence[Received]) -> BatchResult:
        if isinstance(self.ingestor, IngestorProcess):
            return self.ingestor.process(batch)
        return self.ingestor.process(inbound(batch))

    def commit(self, batch: Sequence[Received]) -> bool:
        """Apply the batch, retrying while the database is unavailable; ack on success.
        False when stop was requested before it could be stored (nothing acked)."""
        delay = 0.1
        while True:
            started = time.monotonic()
            try:
                try:
                    result = self._process(batch)
                except Exception as exc:
                    if is_retryable(exc):
                        raise
                    # Not the database: our own bug on some message. Find it, keep it as a
                    # dead letter, so one bad message cannot stall every centre behind it.
                    log.exception("batch failed; applying its messages one by one")
                    result = self._one_by_one(batch)
            except Exception as exc:
                if not is_retryable(exc):
                    raise
                self.metrics.db_retries.inc()
                log.warning(
                    "database unavailable; batch will be retried",
                    extra={
                        "error": f"{type(exc).__name__}: {exc}".splitlines()[0][:300],
                        "retry_in_s": round(delay, 2),
                        "batch": len(batch),
                    },
                )
                if self.stop.wait(delay):
                    return False
                delay = min(delay * 2, MAX_BACKOFF_S)
                continue
            self._stored(batch, result, time.monotonic() - started)
            return True

    def commit_overlapped(self, batch: Sequence[Received]) -> list[Received] | None:
        """Finish :meth:`commit` of a batch submitted to the ingest process, overlapping the
        next one: what arrived meanwhile goes to the process as the next batch the moment this
        one has committed, and only then are this one's messages acknowledged, so the process
        never waits for the acknowledgements. Returns that next batch (submitted; empty when
        nothing arrived), or None when stop was requested before ``batch`` could be stored."""
        assert isinstance(self.ingestor, IngestorProcess)
        try:
            result = self.ingestor.result()
        except Exception:
            # Retries with backoff, or a bad message dead-lettered, exactly as without overlap.
            return [] if self.commit(batch) else None
        seconds = time.monotonic() - self._submitted_at
        upcoming = self.take_batch(wait_s=0.0, fill_s=0.0)
        self.metrics.queue_depth.set(self.inbox.qsize())
        self.housekeeping_if_due()  # the process is idle now: a stream cannot starve it
        submitted = bool(upcoming) and self._submit(upcoming)
        self._stored(batch, result, seconds)
        if upcoming and not submitted:
            return [] if self.commit(upcoming) else None
        return upcoming

    def _submit(self, batch: Sequence[Received]) -> bool:
        assert isinstance(self.ingestor, IngestorProcess)
        self._submitted_at = time.monotonic()
        try:
            self.ingestor.submit(batch)
        except Exception:
            return False
        return True

    def _stored(self, batch: Sequence[Received], result: BatchResult, seconds: float) -> None:
        """A batch is committed: acknowledge it, count it."""
        self._ack(batch)
        self.metrics.received.inc(len(batch))
        self.metrics.observe_batch(result, seconds)
        self.totals.add(result)
        log.debug(
            "batch",
            extra={
                "received": result.received,
                "stored": result.stored,
                "duplicates": result.duplicates,
                "dead_lettered": result.dead_lettered,
                "dossiers": result.dossiers_changed,
                "seconds": round(seconds, 4),
            },
        )

    def _one_by_one(self, batch: Sequence[Received]) -> BatchResult:
        total = BatchResult()
        for item in batch:
            try:
                total.add(self._process([item]))
            except Exception as exc:
                if is_retryable(exc):
                    raise
                (msg,) = inbound([item])
                log.exception("message failed; dead-lettered", extra={"topic": msg.topic})
                self.ingestor.dead_letter(msg, PROCESSING_ERROR, f"{type(exc).__name__}: {exc}")
                total.received += 1
                total.dead_lettered += 1
                total.by_reason[PROCESSING_ERROR] += 1
        return total

    def _ack(self, batch: Sequence[Received]) -> None:
        if not self.connected:
            return  # the broker redelivers them on the next connection; they are duplicates then
        generation = self.generation
        # QoS 1 is what we subscribe with, so the broker sends 0 (no ack) or 1; a QoS 2
        # message, which it should not send, is acknowledged the way paho does it.
        pubacks = [mid for _t, _p, _a, gen, mid, qos, _r in batch if qos == 1 and gen == generation]
        if pubacks:
            send_pubacks(self.client, pubacks)
        for _t, _p, _a, gen, mid, qos, _r in batch:
            if qos == 2 and gen == generation:
                self.client.ack(mid, qos)

    def housekeeping(self) -> None:
        now = datetime.now(UTC)
        try:
            self.ingestor.sweep_orphans(now)
        except Exception as exc:
            log.warning(
                "orphan sweep failed", extra={"error": f"{type(exc).__name__}: {exc}"[:300]}
            )
        try:
            self.ingestor.heartbeat("collector", self.info())
        except Exception as exc:
            log.warning("heartbeat failed", extra={"error": f"{type(exc).__name__}: {exc}"[:300]})

    def info(self) -> dict[str, Any]:
        t = self.totals
        return {
            "pid": os.getpid(),
            "connected": self.connected,
            "queue_depth": self.inbox.qsize(),
            "received": t.received,
            "stored": t.stored,
            "duplicates": t.duplicates,
            "dead_lettered": t.dead_lettered,
            "statuses": t.statuses,
        }

    def housekeeping_if_due(self) -> None:
        now = time.monotonic()
        if now >= self._next_beat:
            self.housekeeping()
            self._next_beat = now + HEARTBEAT_S
        if now >= self._next_summary:
            log.info("collector summary", extra=self.info())
            self._next_summary = now + SUMMARY_S

    def run(self) -> None:
        log.info("collector starting", extra={"topics": ",".join(subscriptions(self.settings))})
        self.connect()
        self._next_beat = 0.0
        self._next_summary = time.monotonic() + SUMMARY_S
        # With an ingest process, receiving and acknowledging overlap with storing: the batch
        # being stored is ``pending`` (submitted, not answered yet).
        overlap = isinstance(self.ingestor, IngestorProcess)
        pending: list[Received] = []
        try:
            while not self.stop.is_set():
                if pending:
                    upcoming = self.commit_overlapped(pending)
                    pending = upcoming or []
                    if upcoming is None:
                        break
                    continue
                batch = self.take_batch(wait_s=0.5)
                self.metrics.queue_depth.set(self.inbox.qsize())
                self.housekeeping_if_due()
                if batch and overlap and self._submit(batch):
                    pending = batch
                elif batch and not self.commit(batch):
                    break
            if pending:
                self.finish_once(pending)
            # Stopping: store and ack what was already taken off the network, then leave.
            while True:
                batch = self.take_batch(wait_s=0.0)
                if not batch or not self.commit_once(batch):
                    break
        finally:
            self.client.disconnect()
            self.client.loop_stop()
            log.info("collector stopped", extra=self.info())

    def finish_once(self, batch: Sequence[Received]) -> bool:
        """While stopping: the answer for a submitted batch; acknowledged if it was stored."""
        assert isinstance(self.ingestor, IngestorProcess)
        try:
            result = self.ingestor.result()
        except Exception as exc:
            log.warning(
                "final batch not stored; broker will redeliver", extra={"error": str(exc)[:300]}
            )
            return False
        self._stored(batch, result, time.monotonic() - self._submitted_at)
        return True

    def commit_once(self, batch: Sequence[Received]) -> bool:
        """One attempt while stopping; on failure the broker redelivers the batch later."""
        try:
            result = self._process(batch)
        except Exception as exc:
            log.warning(
                "final batch not stored; broker will redeliver", extra={"error": str(exc)[:300]}
            )
            return False
        self._ack(batch)
        self.metrics.received.inc(len(batch))
        self.totals.add(result)
        return True


def run(settings: Settings, stop_event: threading.Event | None = None) -> None:
    """Collect until ``stop_event`` is set (forever if None)."""
    stop = stop_event or threading.Event()
    metrics = CollectorMetrics()
    if settings.collector_metrics_port:
        metrics.serve(settings.collector_metrics_port)
    ingestor = IngestorProcess(settings)
    try:
        Collector(settings, ingestor, metrics, stop).run()
    finally:
        ingestor.close()
