"""The database side of the collector in a child process.

paho's network thread and the ingestion (validation, state derivation, SQL) are both Python:
in one process they take turns on the interpreter lock, so the collector would receive at
the speed of one CPU doing both jobs. :class:`IngestorProcess` runs the :class:`Ingestor` in a
child process behind a pipe, with the same methods, so receiving and storing overlap.
The parent keeps everything MQTT (acks included); the child never talks to the broker.

Messages cross the pipe as they came off the network (:data:`Received`: topic and payload
bytes, arrival as epoch seconds), a batch as a few flat columns (:func:`pack`): pickling them
is a memory copy, where a list of :class:`InboundMessage` with aware datetimes cost the
parent more per message than everything else it does besides paho. The child decodes the
topic and makes the datetimes (:func:`unpack`).
"""

from __future__ import annotations

import gc
import logging
import multiprocessing
import multiprocessing.connection
import signal
import typing
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from collectors.ingest import BatchResult, InboundMessage, Ingestor, ReferenceDataMissing
from control_center.settings import Settings

log = logging.getLogger("collector.worker")

# A message as paho's thread hands it over, nothing decoded or converted (that is the ingest
# process's work): topic, payload, arrival (time.time()), connection generation, packet id,
# QoS, retained. A plain tuple: the receiving thread makes one per message.
Received = tuple[bytes, bytes, float, int, int, int, bool]
# What the ingest process needs of a batch, as columns: topics, payloads, arrivals, retained.
Packed = tuple[tuple[bytes, ...], tuple[bytes, ...], tuple[float, ...], tuple[bool, ...]]


def pack(batch: Sequence[Received]) -> Packed:
    if not batch:
        return (), (), (), ()
    topics, payloads, arrivals, _generations, _mids, _qos, retained = zip(*batch, strict=True)
    return topics, payloads, arrivals, retained


def unpack(packed: Packed) -> list[InboundMessage]:
    topics, payloads, arrivals, retained = packed
    names: dict[bytes, str] = {}  # a province has a few hundred topics
    out = []
    for topic, payload, arrived, kept in zip(topics, payloads, arrivals, retained, strict=True):
        name = names.get(topic)
        if name is None:
            # Not UTF-8 cannot be refused here: the message still needs its bad_topic letter.
            name = names[topic] = topic.decode("utf-8", errors="replace")
        out.append(InboundMessage(name, payload, datetime.fromtimestamp(arrived, UTC), None, kept))
    return out


def inbound(batch: Sequence[Received]) -> list[InboundMessage]:
    """The messages as :class:`Ingestor` takes them (an ingestor in this process)."""
    return unpack(pack(batch))


class WorkerError(RuntimeError):
    """An error raised in the child process; ``retryable`` for database trouble."""

    def __init__(self, message: str, retryable: bool) -> None:
        super().__init__(message)
        self.retryable = retryable


def is_retryable(exc: BaseException) -> bool:
    from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

    if isinstance(exc, WorkerError):
        return exc.retryable
    if isinstance(exc, OperationalError | InterfaceError | ReferenceDataMissing):
        return True
    return isinstance(exc, DBAPIError) and exc.connection_invalidated


def _child(settings: Settings, conn: multiprocessing.connection.Connection) -> None:
    from control_center.db import engine_from_settings
    from control_center.logs import setup_logging

    # Ctrl-C reaches the whole process group; the parent decides when to stop, and it still
    # needs this process to store its last batch.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    setup_logging(settings.log_level)
    engine = engine_from_settings(settings)
    ingestor = Ingestor(engine, settings)
    # A batch makes tens of thousands of short-lived containers. With the default threshold
    # (700) the cyclic collector ran every ~80 events and cost ~8-11 µs per event, a tenth of
    # this process, much of it going over the ~110,000 objects the imports made. Those are
    # frozen out of its sight, and it runs about once a batch: cycles are still collected, and
    # never more than ~20,000 new objects wait for it.
    gc.freeze()
    gc.set_threshold(20_000)
    ops = {"process": lambda packed: ingestor.process(unpack(packed))}
    try:
        while True:
            try:
                op, args = conn.recv()
            except (EOFError, OSError):
                return  # the parent is gone (stopped or killed): nothing left to answer
            try:
                reply: tuple[Any, ...] = ("ok", (ops.get(op) or getattr(ingestor, op))(*args))
            except Exception as exc:
                if not is_retryable(exc):
                    log.exception("ingestion failed", extra={"op": op})
                text = f"{type(exc).__name__}: {exc}".splitlines()[0][:1000]
                reply = ("error", text, is_retryable(exc))
            try:
                conn.send(reply)
            except (BrokenPipeError, OSError):
                return
    finally:
        engine.dispose()


class IngestorProcess:
    """The parts of :class:`Ingestor` the service uses, in a child process; :meth:`process`
    takes the messages as received (:data:`Received`)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._ctx = multiprocessing.get_context("spawn")  # no fork: paho's threads and pools
        self._conn: multiprocessing.connection.Connection | None = None
        self._proc: Any = None
        self._start()

    def _start(self) -> None:
        parent, child = self._ctx.Pipe()
        self._proc = self._ctx.Process(
            target=_child, args=(self.settings, child), name="collector-ingest", daemon=True
        )
        self._proc.start()
        child.close()
        self._conn = parent

    def _call(self, op: str, *args: Any) -> Any:
        self._send(op, args)
        return self._answer()

    def _send(self, op: str, args: tuple[Any, ...]) -> None:
        assert self._conn is not None
        try:
            self._conn.send((op, args))
        except (EOFError, OSError) as exc:
            self._died(exc)

    def _answer(self) -> Any:
        assert self._conn is not None
        try:
            reply = self._conn.recv()
        except (EOFError, OSError) as exc:
            self._died(exc)
        if reply[0] == "ok":
            return reply[1]
        raise WorkerError(reply[1], retryable=reply[2])

    def _died(self, exc: BaseException) -> typing.NoReturn:
        # The child died (killed, out of memory): start a new one, let the caller retry.
        log.error("ingest process died; restarting it", extra={"error": str(exc)})
        self.close()
        self._start()
        raise WorkerError("ingest process died", retryable=True) from exc

    def process(self, batch: Sequence[Received]) -> BatchResult:
        return self._call("process", pack(batch))

    def submit(self, batch: Sequence[Received]) -> None:
        """Start :meth:`process` of ``batch`` in the child; :meth:`result` waits for it.
        Nothing else may be asked of the child in between."""
        self._send("process", (pack(batch),))

    def result(self) -> BatchResult:
        """The answer to :meth:`submit` (raises like :meth:`process`)."""
        return typing.cast(BatchResult, self._answer())

    def dead_letter(self, msg: InboundMessage, reason: str, detail: str) -> None:
        self._call("dead_letter", msg, reason, detail)

    def sweep_orphans(self, now: datetime) -> int:
        return self._call("sweep_orphans", now)

    def heartbeat(self, name: str, info: dict[str, Any]) -> None:
        self._call("heartbeat", name, info)

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        if self._proc is not None:
            self._proc.join(10)
            if self._proc.is_alive():
                self._proc.kill()
                self._proc.join(5)
            self._proc = None
