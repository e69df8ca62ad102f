"""What one server worker lets requests cost: bytes received, pixels decoded, memory kept."""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import threading
from collections.abc import Callable, Iterator

M_MMAP_THRESHOLD = -3  # glibc mallopt parameter (malloc.h)
MMAP_FROM_BYTES = 4 << 20


class PixelBudget:
    """At most `limit` decoded pixels in flight across the worker's decoder threads: however many
    requests arrive together, images wait for room rather than all being decoded at once."""

    def __init__(self, limit: int):
        self.limit, self.in_use = limit, 0
        self._room = threading.Condition()

    @contextlib.contextmanager
    def reserve(self, pixels: int) -> Iterator[None]:
        pixels = min(pixels, self.limit)
        with self._room:
            self._room.wait_for(lambda: self.in_use + pixels <= self.limit)
            self.in_use += pixels
        try:
            yield
        finally:
            with self._room:
                self.in_use -= pixels
                self._room.notify_all()


def return_large_frees_at_once() -> None:
    """glibc serves allocations under its mmap threshold (adaptive, up to 32 MB) from per-thread
    heaps that keep what is freed for reuse: each decoder thread would keep a large image's worth
    after its request. With a fixed, low threshold every large buffer (image blocks, arrays) is
    mapped on its own, and freeing it hands it back to the OS at once. Process-wide: serve's workers
    are processes of their own. Elsewhere than glibc it does nothing."""
    name = ctypes.util.find_library("c")
    mallopt = getattr(ctypes.CDLL(name), "mallopt", None) if name else None
    if mallopt is not None:
        mallopt(M_MMAP_THRESHOLD, MMAP_FROM_BYTES)


class BodyLimit:
    """ASGI middleware: counts a request's body as it arrives and raises `error(message)` inside the
    app's read (a 413 from its handler) as soon as it passes `max_bytes`, with or without a
    Content-Length: the rest is never read."""

    def __init__(self, app, max_bytes: int, error: Callable[[str], Exception]):
        self.app, self.max_bytes, self.error = app, max_bytes, error

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        received = 0

        async def counted():
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise self.error(f"request body over the limit of {self.max_bytes:,} bytes (lenet-dist serve "
                                     "--max-upload-mb, --max-files); stopped reading it")
            return message

        return await self.app(scope, counted, send)
