"""The embedded broker: whole messages only, each taken by exactly one consumer, in order."""

from kombu import Connection

from backend.archive.fsqueue import Transport


def connection(folder):
    return Connection(
        "filesystem://localhost/",
        transport=Transport,
        transport_options={
            "data_folder_in": str(folder / "queue"),
            "data_folder_out": str(folder / "queue"),
            "processed_folder": str(folder / "processed"),
            "store_processed": True,
        },
    )


def test_it_delivers_messages_in_order(tmp_path):
    with connection(tmp_path) as conn:
        queue = conn.SimpleQueue("celery")
        for n in range(5):
            queue.put({"n": n})
        got = []
        for _ in range(5):
            message = queue.get(timeout=1)
            got.append(message.payload["n"])
            message.ack()
        assert got == [0, 1, 2, 3, 4]


def test_it_never_shows_a_half_written_message(tmp_path):
    with connection(tmp_path) as conn:
        queue = conn.SimpleQueue("celery")
        queue.put({"n": 1})
        # A producer mid-write: the file exists under its temporary name only.
        (tmp_path / "queue" / "tmp" / "99_x.celery.msg").write_bytes(b'{"trunc')
        assert queue.get(timeout=1).payload == {"n": 1}
        assert queue.qsize() == 0


def test_it_gives_each_message_to_one_consumer(tmp_path):
    with connection(tmp_path) as first, connection(tmp_path) as second:
        producer = first.SimpleQueue("celery")
        for n in range(20):
            producer.put({"n": n})
        a, b = first.SimpleQueue("celery"), second.SimpleQueue("celery")
        seen = []
        for _ in range(10):
            for consumer in (a, b):
                message = consumer.get(timeout=1)
                seen.append(message.payload["n"])
                message.ack()
        assert sorted(seen) == list(range(20))
        assert not list((tmp_path / "processed").iterdir())
