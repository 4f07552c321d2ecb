"""Image worker: make thumbnails of uploaded pictures off the request path.

An upload endpoint stores the file, publishes ``{"source": path, "sizes": [...]}`` to the
``images`` topic and answers at once; this handler writes one thumbnail per requested size.

What it really does, with no imaging library: it reads binary Netpbm images (``P6`` colour
PPM and ``P5`` greyscale PGM, 8 bits per sample, the formats ``convert``/``ffmpeg``/``pnmtools``
write) and scales each down with nearest-neighbour sampling so that its longer side is the
requested size (never up), keeping the aspect ratio. Thumbnails are written in the source's
format to ``THUMBNAIL_DIR`` (default ``.queuekit/thumbnails``) as ``<stem>-<size>.<ext>``,
under a temporary name and renamed, so a reader never sees half a file and a redelivered
message simply rewrites the same bytes. Swap :func:`read_netpbm` / :func:`write_netpbm` for
Pillow to support PNG and JPEG; the queueing side does not change.

Failures: a missing source, a format other than P5/P6 or a corrupt file cannot be fixed by
trying again, so the handler raises :class:`~queuekit.Reject` and the message goes to the
dead-letter queue at once. Anything else (a full disk, a flaky network mount) is raised as
is, and queuekit retries it with backoff.

    queuekit send images '{"source": "uploads/cat.ppm", "sizes": [64, 256]}'
    queuekit worker examples.image_worker:app
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, Field, field_validator

from queuekit import App, Message, Reject

log = logging.getLogger("examples.images")

app = App("image-service")

MAX_SIZE = 4096
_MAGIC_CHANNELS = {b"P5": 1, b"P6": 3}
_EXTENSIONS = {1: "pgm", 3: "ppm"}


class ImageJob(BaseModel):
    """The payload of an ``images`` message."""

    source: str = Field(min_length=1, max_length=4096, description="A local file path.")
    sizes: list[int] = Field(min_length=1, max_length=10)

    @field_validator("sizes")
    @classmethod
    def _sizes_in_range(cls, sizes: list[int]) -> list[int]:
        if any(not 1 <= size <= MAX_SIZE for size in sizes):
            raise ValueError(f"each size must be from 1 to {MAX_SIZE} pixels")
        return sorted(set(sizes))


class UnreadableImage(ValueError):
    """The file is not an 8-bit binary PPM/PGM, or it is truncated."""


@dataclass(frozen=True, slots=True)
class Image:
    """Raw 8-bit pixels, row by row, ``channels`` bytes per pixel (1 grey, 3 RGB)."""

    width: int
    height: int
    channels: int
    pixels: bytes


def read_netpbm(data: bytes) -> Image:
    """Decode a binary PGM (P5) or PPM (P6) with a maxval of at most 255.

    Raises:
        UnreadableImage: another format, a bad header or too few pixel bytes.
    """
    channels = _MAGIC_CHANNELS.get(data[:2])
    if channels is None:
        raise UnreadableImage("not a binary PPM (P6) or PGM (P5) file")
    fields: list[int] = []
    position = 2
    while len(fields) < 3:
        position = _skip_whitespace_and_comments(data, position)
        start = position
        while position < len(data) and data[position : position + 1].isdigit():
            position += 1
        if start == position:
            raise UnreadableImage("malformed header")
        fields.append(int(data[start:position]))
    width, height, maxval = fields
    if width < 1 or height < 1 or not 1 <= maxval <= 255:
        raise UnreadableImage(f"unsupported dimensions or depth ({width}x{height}, {maxval})")
    position += 1  # exactly one whitespace byte separates the header from the pixels
    size = width * height * channels
    pixels = data[position : position + size]
    if len(pixels) != size:
        raise UnreadableImage(f"truncated: {len(pixels)} of {size} pixel bytes")
    return Image(width, height, channels, pixels)


def _skip_whitespace_and_comments(data: bytes, position: int) -> int:
    while position < len(data):
        byte = data[position : position + 1]
        if byte == b"#":
            end = data.find(b"\n", position)
            position = len(data) if end < 0 else end + 1
        elif byte.isspace():
            position += 1
        else:
            break
    return position


def write_netpbm(image: Image) -> bytes:
    """Encode ``image`` as binary PGM (1 channel) or PPM (3 channels)."""
    magic = b"P5" if image.channels == 1 else b"P6"
    return magic + f"\n{image.width} {image.height}\n255\n".encode() + image.pixels


def thumbnail(image: Image, size: int) -> Image:
    """Scale ``image`` so its longer side is ``size`` (never up), nearest neighbour."""
    scale = min(1.0, size / max(image.width, image.height))
    width = max(1, round(image.width * scale))
    height = max(1, round(image.height * scale))
    channels = image.channels
    row_bytes = image.width * channels
    # Source byte offsets of each output column, computed once for all rows.
    columns = [(x * image.width // width) * channels for x in range(width)]
    out = bytearray()
    for y in range(height):
        row = image.pixels[(y * image.height // height) * row_bytes :][:row_bytes]
        for offset in columns:
            out += row[offset : offset + channels]
    return Image(width, height, channels, bytes(out))


def thumbnail_dir() -> Path:
    """Where thumbnails go: ``THUMBNAIL_DIR``, default ``.queuekit/thumbnails``."""
    return Path(os.environ.get("THUMBNAIL_DIR", ".queuekit/thumbnails"))


def write_atomically(target: Path, data: bytes) -> None:
    """Write ``data`` to ``target`` through a temporary file and a rename."""
    partial = target.with_name(target.name + ".part")
    partial.write_bytes(data)
    partial.replace(target)


@app.handler("images", schema=ImageJob, retries=4, backoff=1.0, timeout=60.0, concurrency=4)
def make_thumbnails(job: ImageJob, message: Message) -> list[Path]:
    """Write one thumbnail per size; return their paths (in size order)."""
    source = Path(job.source)
    try:
        data = source.read_bytes()
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        raise Reject(f"source image {job.source!r} does not exist") from None
    try:
        image = read_netpbm(data)
    except UnreadableImage as exc:
        raise Reject(f"cannot read {job.source!r}: {exc}") from None
    outdir = thumbnail_dir()
    outdir.mkdir(parents=True, exist_ok=True)
    written = []
    for size in job.sizes:
        target = outdir / f"{source.stem}-{size}.{_EXTENSIONS[image.channels]}"
        write_atomically(target, write_netpbm(thumbnail(image, size)))
        written.append(target)
    log.info(
        "thumbnails written",
        extra={"message_id": message.id, "source": job.source, "count": len(written)},
    )
    return written
