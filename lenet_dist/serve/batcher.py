"""A small dynamic batcher: requests that arrive together share one forward pass.

The first waiting request opens a batch; it closes after `max_wait_s` or at `max_images`, and the
model runs once, in one dedicated thread (so the event loop never waits on torch and torch never
runs twice at once). A lone request pays at most `max_wait_s` extra.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

from lenet_dist.inference.predict import DigitRead, read_digits

CPU = torch.device("cpu")


class Batcher:
    def __init__(self, model: torch.nn.Module, meta, max_images: int = 128, max_wait_s: float = 0.002,
                 device: torch.device = CPU):
        self.model, self.meta, self.device = model.to(device), meta, device
        self.max_images, self.max_wait_s = max_images, max_wait_s
        self._queue: asyncio.Queue[tuple[list[np.ndarray], asyncio.Future]] = asyncio.Queue()
        self._model_thread = ThreadPoolExecutor(1, thread_name_prefix="lenet-model")
        self._task: asyncio.Task | None = None
        self.batches = 0  # forward passes so far (tests and the load job read it)

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
        self._model_thread.shutdown(wait=False)

    async def read(self, images: list[np.ndarray]) -> list[DigitRead]:
        future = asyncio.get_running_loop().create_future()
        await self._queue.put((images, future))
        return await future

    async def _next_batch(self) -> list[tuple[list[np.ndarray], asyncio.Future]]:
        batch = [await self._queue.get()]
        count, loop = len(batch[0][0]), asyncio.get_running_loop()
        deadline = loop.time() + self.max_wait_s
        while count < self.max_images:
            try:
                item = await asyncio.wait_for(self._queue.get(), max(0.0, deadline - loop.time()))
            except asyncio.TimeoutError:
                break
            batch.append(item)
            count += len(item[0])
        return batch

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._next_batch()
            images = [image for request, _ in batch for image in request]
            try:
                reads = await loop.run_in_executor(self._model_thread, read_digits, self.model, self.meta, images,
                                                   self.device, len(images))
            except Exception as exc:  # noqa: BLE001 - every waiting request learns of it; the loop lives on
                for _, future in batch:
                    future.set_exception(exc)
                continue
            self.batches += 1
            start = 0
            for request, future in batch:
                if not future.cancelled():
                    future.set_result(reads[start:start + len(request)])
                start += len(request)
