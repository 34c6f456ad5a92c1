"""The collector's hand-over: paho's thread to the writer (Inbox), the writer to the ingest
process (pack/unpack), and the batch's acknowledgements back to the broker (send_pubacks)."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from typing import Any

from collectors import validation as v
from collectors.service import Inbox, send_pubacks
from collectors.worker import Received, pack, unpack


def item(
    topic: bytes, payload: bytes, arrived: float, mid: int, retained: bool = False
) -> Received:
    return (topic, payload, arrived, 1, mid, 1, retained)


def test_a_batch_reaches_the_ingest_process_as_it_arrived() -> None:
    arrived = datetime(2026, 11, 26, 8, 15, 30, 123456, tzinfo=UTC)
    batch = [
        item(b"dvc/v1/08/02269/dossier", b'{"a": "\xc3\xa1"}', arrived.timestamp(), 7),
        item(b"dvc/v1/08/02269/status", b'{"state": "online"}', arrived.timestamp() + 1, 8, True),
        item(b"dvc/v1/08/\xff/dossier", b"{}", arrived.timestamp() + 2, 9),
    ]
    messages = unpack(pack(batch))
    assert [m.topic for m in messages] == [
        "dvc/v1/08/02269/dossier",
        "dvc/v1/08/02269/status",
        "dvc/v1/08/\ufffd/dossier",  # not UTF-8: still a message, for its dead letter
    ]
    assert [m.payload for m in messages] == [b'{"a": "\xc3\xa1"}', b'{"state": "online"}', b"{}"]
    assert messages[0].arrived_at == arrived  # the same instant, to the microsecond, aware
    assert messages[1].arrived_at == datetime(2026, 11, 26, 8, 15, 31, 123456, tzinfo=UTC)
    assert [m.retained for m in messages] == [False, True, False]
    assert unpack(pack([])) == []
    bad = v.validate_message(
        messages[2].topic, b"{}", arrived, province="08", known_communes={"02269"}
    )
    assert isinstance(bad, v.Rejection) and bad.reason == v.BAD_TOPIC


class PahoClient:
    """What send_pubacks uses of paho's client, recorded."""

    def __init__(self) -> None:
        self.packets: list[tuple[int, bytes, int, int]] = []

    def _packet_queue(self, command: int, packet: bytes, mid: int, qos: int) -> Any:
        self.packets.append((command, packet, mid, qos))


class OtherPahoClient:
    def __init__(self) -> None:
        self.acks: list[tuple[int, int]] = []

    def ack(self, mid: int, qos: int) -> Any:
        self.acks.append((mid, qos))


def test_a_batch_is_acknowledged_in_one_write_in_arrival_order() -> None:
    client = PahoClient()
    send_pubacks(client, [3, 1, 65535])  # type: ignore[arg-type]
    assert client.packets == [
        (0x40, b"\x40\x02\x00\x03" + b"\x40\x02\x00\x01" + b"\x40\x02\xff\xff", 0, 0)
    ]
    # A paho without that method: one public ack per message, same order.
    other = OtherPahoClient()
    send_pubacks(other, [3, 1, 2])  # type: ignore[arg-type]
    assert other.acks == [(3, 1), (1, 1), (2, 1)]


def test_the_inbox_holds_at_most_its_size_and_gives_up_on_stop() -> None:
    inbox = Inbox(3)
    stop = threading.Event()
    for mid in range(3):
        assert inbox.put(item(b"t", b"p", 0.0, mid), stop)
    assert inbox.full()
    stop.set()
    assert not inbox.put(item(b"t", b"p", 0.0, 3), stop)  # not enqueued: never acked
    assert inbox.qsize() == 3
    assert [m[4] for m in inbox.take(2, 0.0, 0.0)] == [0, 1]  # arrival order
    assert not inbox.full()


def test_a_full_inbox_takes_more_once_the_writer_takes_a_batch() -> None:
    inbox = Inbox(2)
    stop = threading.Event()
    inbox.put(item(b"t", b"p", 0.0, 0), stop)
    inbox.put(item(b"t", b"p", 0.0, 1), stop)
    done = threading.Event()

    def producer() -> None:
        inbox.put(item(b"t", b"p", 0.0, 2), stop)
        done.set()

    thread = threading.Thread(target=producer, daemon=True)
    thread.start()
    assert [m[4] for m in inbox.take(2, 1.0, 0.0)] == [0, 1]
    assert done.wait(10)  # the blocked producer gets in once the writer took a batch
    assert [m[4] for m in inbox.take(5, 1.0, 0.0)] == [2]
    thread.join(5)
