"""examples/image_worker.py on a real Worker: thumbnails written, bad sources dead-lettered."""

from __future__ import annotations

from pathlib import Path

import pytest
from example_helpers import finished, running, wait_until
from examples.image_worker import (
    Image,
    UnreadableImage,
    app,
    read_netpbm,
    thumbnail,
    write_netpbm,
)

from queuekit.backends.memory import MemoryBroker
from queuekit.message import Message
from queuekit.metrics import Metrics
from queuekit.worker import Worker

TOPIC = "images"


def gradient(width: int, height: int, channels: int) -> Image:
    """Pixel (x, y) has every channel = 10*y + x (readable in failures)."""
    pixels = bytes(
        (10 * y + x) % 256 for y in range(height) for x in range(width) for _ in range(channels)
    )
    return Image(width, height, channels, pixels)


@pytest.fixture
def thumbnails(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "thumbs"
    monkeypatch.setenv("THUMBNAIL_DIR", str(folder))
    return folder


async def publish(broker: MemoryBroker, payload: object) -> Message:
    message = Message.build(TOPIC, payload)
    await broker.publish([message])
    return message


# -- the image code -------------------------------------------------------------------------------


def test_netpbm_round_trips_with_comments_in_the_header() -> None:
    # Given a PPM whose header has a comment
    image = gradient(3, 2, 3)
    data = b"P6\n# made by a camera\n3 2\n255\n" + image.pixels

    # When read and written back / Then pixels and size survive
    assert read_netpbm(data) == image
    assert read_netpbm(write_netpbm(image)) == image


@pytest.mark.parametrize(
    ("data", "complaint"),
    [
        (b"\x89PNG\r\n\x1a\n", "not a binary PPM"),
        (b"P3\n1 1\n255\n0 0 0", "not a binary PPM"),
        (b"P6\nwide 1\n255\n", "malformed header"),
        (b"P6\n2 2\n65535\n" + bytes(24), "unsupported"),
        (b"P6\n2 2\n255\n" + bytes(5), "truncated"),
        (b"", "not a binary PPM"),
    ],
)
def test_unreadable_files_raise_a_clear_error(data: bytes, complaint: str) -> None:
    with pytest.raises(UnreadableImage, match=complaint):
        read_netpbm(data)


def test_thumbnail_keeps_the_aspect_ratio_and_samples_nearest_pixels() -> None:
    # Given an 8x4 grey gradient
    image = gradient(8, 4, 1)

    # When scaled to a longer side of 4
    small = thumbnail(image, 4)

    # Then it is 4x2 and takes every other pixel of every other row
    assert (small.width, small.height) == (4, 2)
    assert list(small.pixels) == [0, 2, 4, 6, 20, 22, 24, 26]


def test_thumbnail_never_scales_up_and_never_reaches_zero() -> None:
    assert thumbnail(gradient(8, 4, 3), 100) == gradient(8, 4, 3)
    tall = thumbnail(gradient(1, 50, 1), 5)
    assert (tall.width, tall.height) == (1, 5)


# -- the handler on a worker ----------------------------------------------------------------------


async def test_a_job_writes_one_thumbnail_per_size(
    broker: MemoryBroker, metrics: Metrics, tmp_path: Path, thumbnails: Path
) -> None:
    # Given an uploaded 8x4 colour picture
    source = tmp_path / "cat.ppm"
    source.write_bytes(write_netpbm(gradient(8, 4, 3)))
    worker = Worker(app, broker, metrics=metrics)

    # When a job asks for three sizes (one listed twice, one larger than the picture)
    async with running(worker):
        await publish(broker, {"source": str(source), "sizes": [4, 2, 100, 4]})
        await wait_until(lambda: finished(metrics, TOPIC, "success") == 1, "the job")

    # Then one thumbnail per distinct size exists, decodable, with the right dimensions
    written = names_in(thumbnails)
    assert written == ["cat-100.ppm", "cat-2.ppm", "cat-4.ppm"]
    sizes = {
        name: (image.width, image.height)
        for name in written
        for image in [read_netpbm((thumbnails / name).read_bytes())]
    }
    assert sizes == {"cat-100.ppm": (8, 4), "cat-2.ppm": (2, 1), "cat-4.ppm": (4, 2)}


async def test_a_greyscale_source_gives_greyscale_thumbnails(
    broker: MemoryBroker, metrics: Metrics, tmp_path: Path, thumbnails: Path
) -> None:
    source = tmp_path / "scan.pgm"
    source.write_bytes(write_netpbm(gradient(6, 6, 1)))
    async with running(Worker(app, broker, metrics=metrics)):
        await publish(broker, {"source": str(source), "sizes": [3]})
        await wait_until(lambda: finished(metrics, TOPIC, "success") == 1, "the job")
    assert read_netpbm((thumbnails / "scan-3.pgm").read_bytes()).channels == 1


@pytest.mark.parametrize(
    ("make_source", "complaint"),
    [
        (lambda folder: folder / "missing.ppm", "does not exist"),
        (lambda folder: folder, "does not exist"),
        (lambda folder: write(folder / "photo.png", b"\x89PNG\r\n\x1a\n..."), "cannot read"),
    ],
)
async def test_a_source_that_cannot_work_is_dead_lettered_at_once(
    broker: MemoryBroker,
    metrics: Metrics,
    tmp_path: Path,
    thumbnails: Path,
    make_source: object,
    complaint: str,
) -> None:
    # Given a job whose source is missing, a folder, or not a PPM/PGM
    source: Path = make_source(tmp_path)  # type: ignore[operator]
    worker = Worker(app, broker, metrics=metrics)

    # When the worker handles it
    async with running(worker):
        message = await publish(broker, {"source": str(source), "sizes": [8]})
        await wait_until(lambda: finished(metrics, TOPIC, "dead_lettered") == 1, "the reject")

    # Then it was rejected on its first attempt, with the reason, and nothing was written
    (letter,) = await broker.dead_letters(TOPIC)
    assert letter.message.id == message.id
    assert letter.reason.startswith("rejected: ")
    assert complaint in letter.reason
    assert letter.attempts == 1
    assert finished(metrics, TOPIC, "retried") == 0
    assert names_in(thumbnails) == []


@pytest.mark.parametrize("sizes", [[], [0], [5000], "big"])
async def test_an_invalid_job_is_dead_lettered_as_invalid_payload(
    broker: MemoryBroker, metrics: Metrics, thumbnails: Path, sizes: object
) -> None:
    async with running(Worker(app, broker, metrics=metrics)):
        await publish(broker, {"source": "x.ppm", "sizes": sizes})
        await wait_until(lambda: finished(metrics, TOPIC, "dead_lettered") == 1, "the reject")
    (letter,) = await broker.dead_letters(TOPIC)
    assert letter.reason == "invalid_payload"


async def test_a_transient_failure_is_retried_and_then_succeeds(
    broker: MemoryBroker,
    metrics: Metrics,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given a thumbnail folder that cannot be created yet (a file is in the way)
    source = tmp_path / "dog.ppm"
    source.write_bytes(write_netpbm(gradient(4, 4, 3)))
    blocked = tmp_path / "out"
    blocked.write_text("not a folder")
    monkeypatch.setenv("THUMBNAIL_DIR", str(blocked / "thumbs"))

    # When the job fails once, and the obstacle is then removed
    async with running(Worker(app, broker, metrics=metrics)):
        await publish(broker, {"source": str(source), "sizes": [2]})
        await wait_until(lambda: finished(metrics, TOPIC, "retried") >= 1, "a retry")
        blocked.unlink()
        await wait_until(lambda: finished(metrics, TOPIC, "success") == 1, "the retry")

    # Then the retry wrote the thumbnail and nothing was dead-lettered
    assert (blocked / "thumbs" / "dog-2.ppm").exists()
    assert await broker.dead_letters(TOPIC) == []


def names_in(folder: Path) -> list[str]:
    """The sorted file names in ``folder`` (none if it does not exist)."""
    return sorted(path.name for path in folder.iterdir()) if folder.exists() else []


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path
