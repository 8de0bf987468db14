"""The kernel's MQTT adapter: the read buffer under paho, the bounded inbox, and a batch of
acknowledgements sent in one write (on the real broker: nothing acknowledged comes again)."""

from __future__ import annotations

import threading
import time
import uuid

import pytest

from cityops.kernel.mqtt import AckingConsumer, BufferedSocket, Inbox, Message, Publisher
from cityops.shell.stack import LocalStack
from tests.waiting import wait_for


class _ChunkSocket:
    """A non-blocking socket that has ``chunks`` to give, one per ``recv``."""

    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = chunks
        self.recv_calls = 0

    def recv(self, n: int) -> bytes:
        self.recv_calls += 1
        if not self.chunks:
            raise BlockingIOError
        return self.chunks.pop(0)


def test_buffered_socket_serves_small_reads_from_one_recv() -> None:
    raw = _ChunkSocket([b"\x30\x05hello\x30\x02hi", b""])
    sock = BufferedSocket(raw)
    assert sock.recv(1) == b"\x30"
    assert sock.pending() == 10
    assert sock.recv(1) == b"\x05"
    assert sock.recv(5) == b"hello"
    assert sock.recv(1) == b"\x30"
    assert sock.recv(1) == b"\x02"
    assert sock.recv(8) == b"hi"  # a short read, as from a socket
    assert raw.recv_calls == 1 and sock.buffered() == 0
    assert sock.recv(1) == b""  # the peer closed: as from a socket
    with pytest.raises(BlockingIOError):
        sock.recv(1)


def _msg(i: int, size: int = 10) -> Message:
    return Message(i, 1, "t", b"x" * size, 0)


def test_inbox_is_bounded_by_count_and_bytes_and_taken_in_bulk() -> None:
    inbox = Inbox(max_messages=3, max_bytes=100)
    for i in range(3):
        assert inbox.put(_msg(i))
    blocked = threading.Thread(target=inbox.put, args=(_msg(3),))
    blocked.start()
    time.sleep(0.1)
    assert blocked.is_alive() and inbox.qsize() == 3  # full by count: the network thread waits
    assert [m.mid for m in inbox.take(2, 0)] == [0, 1]
    blocked.join(2)
    assert [m.mid for m in inbox.take(10, 0)] == [2, 3] and inbox.bytes == 0
    # one message larger than the byte budget still fits when the inbox is empty
    assert inbox.put(_msg(4, 500)) and inbox.bytes == 500
    waiting = threading.Thread(target=inbox.put, args=(_msg(5),))
    waiting.start()
    time.sleep(0.1)
    assert waiting.is_alive()  # full by bytes
    inbox.close()  # stopping: the waiting put gives up
    waiting.join(2)
    assert not waiting.is_alive() and inbox.qsize() == 1
    assert not inbox.put(_msg(6))
    assert inbox.take(5, 0.01)[0].mid == 4 and inbox.take(5, 0.01) == []


def test_a_batch_acknowledged_in_one_write_is_not_delivered_again(stack: LocalStack) -> None:
    topic_filter = f"city/water/ackmany-{uuid.uuid4().hex[:6]}/telemetry"
    url = stack.mqtt_url("cityops-admin")
    client_id = f"ackmany-{uuid.uuid4().hex[:6]}"

    def consumer() -> AckingConsumer:
        c = AckingConsumer(url, client_id, [topic_filter])
        c.start(10)
        return c

    first = consumer()
    try:
        with Publisher(url, f"pub-{client_id}") as pub:
            for i in range(300):
                pub.publish(topic_filter, str(i).encode())
        got: list[Message] = []
        deadline = time.monotonic() + 15
        while len(got) < 300 and time.monotonic() < deadline:
            got += first.queue.take(300, 0.2)
        assert sorted(int(m.payload) for m in got) == list(range(300))
        first.ack_many(got[:250])
        time.sleep(0.5)
    finally:
        first.stop()  # the session stays: the 50 not acknowledged must come again
    again = consumer()
    try:
        redelivered: list[Message] = []
        deadline = time.monotonic() + 10
        while len(redelivered) < 50 and time.monotonic() < deadline:
            redelivered += again.queue.take(100, 0.2)
        redelivered += again.queue.take(100, 1.0)  # and nothing more
        assert sorted(int(m.payload) for m in redelivered) == sorted(
            int(m.payload) for m in got[250:]
        )
        again.ack_many(redelivered)
    finally:
        again.stop(end_session=True)


def test_telemetry_nobody_took_is_published_again_until_a_subscriber_comes(
    stack: LocalStack,
) -> None:
    """A PUBACK saying "no matching subscribers" means nobody kept the message (decision 0081):
    a telemetry publisher sends it again until a subscriber takes it, gives up after its grace
    where nothing subscribes at all, and an event publisher does neither."""
    url = stack.mqtt_url("cityops-admin")
    tag = uuid.uuid4().hex[:6]
    topic = f"city/unrouted/{tag}/a"  # outside telemetry: no other test's session takes it
    pub = Publisher(url, f"pub-{tag}", resend_unrouted_s=20)
    flushed = threading.Event()

    def publish_50() -> None:
        with pub:
            for i in range(50):
                pub.publish(topic, str(i).encode())
            pub.flush()
        flushed.set()

    sender = threading.Thread(target=publish_50)
    sender.start()
    # nobody subscribed yet: every message comes back unrouted, and goes again
    wait_for(lambda: pub.resent_unrouted >= 50, timeout_s=10, what="50 published again")
    assert not flushed.is_set()
    late = AckingConsumer(url, f"late-{tag}", [topic])
    late.start(10)
    try:
        got: list[Message] = []
        deadline = time.monotonic() + 15
        while len({m.payload for m in got}) < 50 and time.monotonic() < deadline:
            got += late.queue.take(100, 0.2)
        late.ack_many(got)
        sender.join(15)
        assert flushed.is_set() and pub.dropped_unrouted == 0
        assert sorted({int(m.payload) for m in got}) == list(range(50))
    finally:
        late.stop(end_session=True)

    lonely = f"city/unrouted/{tag}/lonely"
    with Publisher(url, f"lonely-{tag}", resend_unrouted_s=0.5) as pub:
        t = time.monotonic()
        for _ in range(20):
            pub.publish(lonely, b"x")
        pub.flush()
        assert 0.5 <= time.monotonic() - t < 5 and pub.dropped_unrouted == 20
        t = time.monotonic()
        for _ in range(20):
            pub.publish(lonely, b"x")
        pub.flush()  # no subscriber since the grace ended: no new wait
        assert time.monotonic() - t < 0.5 and pub.dropped_unrouted == 40
    stop = threading.Event()
    with Publisher(url, f"stopped-{tag}", resend_unrouted_s=30, interrupt=stop) as pub:
        pub.publish(f"city/unrouted/{tag}/stopped", b"x")
        threading.Timer(0.5, stop.set).start()
        t = time.monotonic()
        pub.flush()  # a stop request ends the wait for a subscriber
        assert time.monotonic() - t < 2 and pub.dropped_unrouted == 1
    with Publisher(url, f"event-{tag}") as pub:
        pub.publish(f"city/alerts/unrouted-{tag}", b"x")
        pub.flush()
        assert pub.resent_unrouted == 0 and pub.dropped_unrouted == 0


def test_a_publisher_carries_on_across_a_broker_restart(
    stack: LocalStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Messages published while the broker is down are sent again once it is back (paho says
    they failed, whatever becomes of the copy it queued): a subscriber with a session receives
    every one; before, the flush raised and a simulator stopped."""
    import cityops.shell.stack

    monkeypatch.setattr(cityops.shell.stack, "port_is_free", lambda port: True)  # same port
    url = stack.mqtt_url("cityops-admin")
    tag = uuid.uuid4().hex[:6]
    topic = f"city/restart/{tag}/a"
    sub = AckingConsumer(url, f"keeps-{tag}", [topic])
    sub.start(10)
    try:
        with Publisher(url, f"carries-{tag}") as pub:
            for i in range(50):
                pub.publish(topic, str(i).encode())
            pub.flush()
            try:
                stack.stop_mosquitto()
                for i in range(50, 100):  # the broker is away: paho queues them
                    pub.publish(topic, str(i).encode())
            finally:
                stack.start_mosquitto()
            pub.flush(timeout_s=60)
        got: set[int] = set()
        deadline = time.monotonic() + 30
        while len(got) < 100 and time.monotonic() < deadline:
            batch = sub.queue.take(200, 0.2)
            got |= {int(m.payload) for m in batch}
            sub.ack_many(batch)
        assert got == set(range(100))
    finally:
        sub.stop(end_session=True)
