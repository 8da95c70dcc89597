"""Dynamic batching for the server: concurrent requests are decoded together.

Why: one request at a time leaves the batched decoder idle; a worker thread that takes up to
``max_batch`` queued requests (waiting at most ``max_wait_s`` after the first for more) and
hands them to ``generate`` in one call serves many clients for little more than the cost of
one. The queue is bounded (``QueueFull`` instead of unbounded memory and latency); a request
whose client gave up (its future cancelled) before the worker took it is skipped; a batch whose
``generate`` raises is retried one request at a time, so one bad request fails alone.
"""
from __future__ import annotations

import logging
import queue
import threading
import time
from collections import Counter
from concurrent.futures import Future
from typing import Callable

log = logging.getLogger(__name__)


class QueueFull(RuntimeError):
    """The request queue holds ``queue_size`` requests already."""


class DynamicBatcher:
    """``submit(request) -> Future`` of ``generate([request, ...])[i]``, one worker thread."""

    def __init__(self, generate: Callable[[list], list], max_batch: int = 16,
                 max_wait_s: float = 0.02, queue_size: int = 64):
        if max_batch < 1 or queue_size < 1 or max_wait_s < 0:
            raise ValueError(f"max_batch ({max_batch}) and queue_size ({queue_size}) must be "
                             f">= 1 and max_wait_s ({max_wait_s}) >= 0")
        self.generate, self.max_batch, self.max_wait_s = generate, max_batch, max_wait_s
        self.queue_size = queue_size
        self._queue: queue.Queue = queue.Queue(maxsize=queue_size)
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._sizes: Counter = Counter()          # batch size -> number of batches
        self._counts = Counter(decoded=0, cancelled=0, failed=0, retried=0)
        self._busy_s = 0.0
        self._thread = threading.Thread(target=self._run, name="dualspeech-batcher", daemon=True)

    def start(self) -> "DynamicBatcher":
        self._thread.start()
        return self

    def stop(self, timeout: float = 30.0) -> None:
        """Finish the batch in progress; requests still queued are cancelled."""
        self._stop.set()
        self._thread.join(timeout)
        while True:
            try:
                self._queue.get_nowait()[1].cancel()
            except queue.Empty:
                return

    def submit(self, request) -> Future:
        if self._stop.is_set():
            raise RuntimeError("the batcher is stopped")
        fut: Future = Future()
        try:
            self._queue.put_nowait((request, fut))
        except queue.Full:
            raise QueueFull(f"the request queue is full ({self.queue_size} waiting)") from None
        return fut

    def stats(self) -> dict:
        """Batch sizes seen so far (``{size: batches}``), request counts and busy time."""
        with self._lock:
            return {"queued": self._queue.qsize(), "batches": sum(self._sizes.values()),
                    "batch_sizes": {str(k): v for k, v in sorted(self._sizes.items())},
                    "max_batch_seen": max(self._sizes, default=0), **self._counts,
                    "busy_s": round(self._busy_s, 3)}

    # -- worker -------------------------------------------------------------------------------
    def _collect(self) -> list:
        try:
            jobs = [self._queue.get(timeout=0.1)]
        except queue.Empty:
            return []
        deadline = time.monotonic() + self.max_wait_s
        while len(jobs) < self.max_batch:
            left = deadline - time.monotonic()
            try:
                jobs.append(self._queue.get(timeout=left) if left > 0 else
                            self._queue.get_nowait())
            except queue.Empty:
                break
        return jobs

    def _run(self) -> None:
        while not self._stop.is_set():
            jobs = self._collect()
            live = [(r, f) for r, f in jobs if f.set_running_or_notify_cancel()]
            with self._lock:
                self._counts["cancelled"] += len(jobs) - len(live)
            if live:
                self._decode(live)

    def _decode(self, live: list) -> None:
        start = time.perf_counter()
        try:
            results = self.generate([r for r, _ in live])
            outcomes = list(zip(live, results, [None] * len(live)))
        except Exception as e:  # noqa: BLE001 -- isolate the request that broke the batch
            log.warning("a batch of %d failed (%s); retrying one at a time", len(live), e)
            outcomes = []
            for job in live:
                try:
                    outcomes.append((job, self.generate([job[0]])[0], None))
                except Exception as one:  # noqa: BLE001 -- this request's own failure
                    log.exception("request failed")
                    outcomes.append((job, None, one))
            with self._lock:
                self._counts["retried"] += len(live)
        with self._lock:          # counted before the clients hear back
            self._sizes[len(live)] += 1
            self._counts["decoded"] += len(live)
            self._counts["failed"] += sum(e is not None for *_, e in outcomes)
            self._busy_s += time.perf_counter() - start
        for (_, fut), result, error in outcomes:
            if error is None:
                fut.set_result(result)
            else:
                fut.set_exception(error)
