"""Stages on threads joined by bounded queues (`in_background`), on a pool of reusable worker
threads: decoding, processing and encoding overlap, and memory stays flat whatever the
video's length."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass

QUEUE_FRAMES = 16
"""Frames buffered between two stages (decoded frames are a few MB each at 1080p)."""


_END = object()
_NOTHING = object()


@dataclass
class _QueueWaits:
    room: float = 0.0  # seconds the stage waited for room in its queue
    item: float = 0.0  # seconds its reader waited for an item
    runs: int = 0  # queues made for the stage


_WAITS: dict[str, _QueueWaits] = {}
_WAITS_LOCK = threading.Lock()


def queue_waits() -> dict[str, tuple[float, float, int]]:
    """Seconds waited at the `in_background` queues of this process so far, by stage name:
    (the stage waiting for room, its reader being slower; its reader waiting for an item, the
    stage being slower; the stage's runs). The stage the others wait for, and that waits least
    itself, sets the pace of a run: where a GPU idles, this says which stage starves it."""
    with _WAITS_LOCK:
        return {name: (waits.room, waits.item, waits.runs) for name, waits in _WAITS.items()}


def waits_since(before: Mapping[str, tuple[float, float, int]]) -> str:
    """`queue_waits` of the stages that ran since the reading `before`, as one line: stage, then
    the seconds it waited for room and the seconds its reader waited for it."""
    waits = []
    for name, (room, item, runs) in queue_waits().items():
        room_before, item_before, runs_before = before.get(name, (0.0, 0.0, 0))
        if runs > runs_before:
            waits.append(f"{name} {room - room_before:.1f}/{item - item_before:.1f}")
    return "stage waits (s, stage for room / its reader for it): " + ", ".join(waits)


class _Failure:
    def __init__(self, error: BaseException) -> None:
        self.error = error


class _Worker:
    """A daemon thread that runs one job after another (see `_WorkerPool`)."""

    def __init__(self, pool: _WorkerPool) -> None:
        self._pool = pool
        self._jobs: queue.SimpleQueue[tuple[str, Callable[[], None]]] = queue.SimpleQueue()
        self.stage = ""
        self.thread = threading.Thread(target=self._loop, name="vidface-idle", daemon=True)
        self.thread.start()

    def run(self, stage: str, job: Callable[[], None]) -> None:
        self.stage = stage
        self._jobs.put((stage, job))

    def _loop(self) -> None:
        while True:
            stage, job = self._jobs.get()
            self.thread.name = f"vidface-{stage}"
            job()  # never raises: in_background's job hands every exception to its consumer
            self.thread.name = "vidface-idle"
            self._pool.release(self)


class _WorkerPool:
    """Threads for `in_background`, kept when idle and reused by later calls.

    A resumable run starts its stages afresh for every segment; on new threads each time, the
    C allocator (glibc's per-thread arenas) and torch's per-thread OpenMP team would be set up
    again and again, and the process's peak memory crept up segment after segment. A job goes
    to an idle thread that last ran the same stage, so a stage keeps its arena and its OpenMP
    threads; there are never more threads than stages that ran at one time.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._idle: list[_Worker] = []

    def start(self, stage: str, job: Callable[[], None]) -> None:
        with self._lock:
            same = [worker for worker in self._idle if worker.stage == stage]
            worker = same[-1] if same else self._idle[-1] if self._idle else None
            if worker is not None:
                self._idle.remove(worker)
        if worker is None:
            worker = _Worker(self)
        worker.run(stage, job)

    def release(self, worker: _Worker) -> None:
        with self._lock:
            self._idle.append(worker)


_WORKERS = _WorkerPool()


def in_background(items: Iterable, cancel: threading.Event, name: str, maxsize: int = QUEUE_FRAMES) -> Iterator:
    """Iterate `items` on a worker thread (named vidface-`name` while it runs), through a queue
    of at most `maxsize` items.

    An exception on the thread is re-raised in the consumer; setting `cancel` (or closing the
    returned generator before its end, which sets `cancel`) stops the thread at its next item.
    The consumer's generator returns only once the thread is done with `items` (closed it), so
    the thread can at once take the next call's work.
    """
    buffer: queue.Queue = queue.Queue(maxsize)
    done = threading.Event()
    with _WAITS_LOCK:
        waits = _WAITS.setdefault(name, _QueueWaits())
        waits.runs += 1

    def put(item: object) -> bool:
        if cancel.is_set():
            return False
        try:
            buffer.put_nowait(item)
            return True
        except queue.Full:
            waiting = time.perf_counter()
        try:
            while not cancel.is_set():
                try:
                    buffer.put(item, timeout=0.05)
                    return True
                except queue.Full:
                    continue
            return False
        finally:
            with _WAITS_LOCK:
                waits.room += time.perf_counter() - waiting

    def work() -> None:
        try:
            iterator = iter(items)
            try:
                for item in iterator:
                    if not put(item):
                        return
                put(_END)
            finally:
                close = getattr(iterator, "close", None)
                if close is not None:
                    close()
        except BaseException as error:  # handed to the consumer, which re-raises it
            put(_Failure(error))
        finally:
            done.set()

    _WORKERS.start(name, work)

    ended = False

    def stop() -> None:
        if not ended:
            cancel.set()
        done.wait()

    def take() -> object:
        """The next item, waited for; _NOTHING once the worker is done and left none."""
        waiting = time.perf_counter()
        try:
            while True:
                try:
                    return buffer.get(timeout=0.05)
                except queue.Empty:
                    if done.is_set() and buffer.empty():
                        return _NOTHING
        finally:
            with _WAITS_LOCK:
                waits.item += time.perf_counter() - waiting

    def consume() -> Iterator:
        nonlocal ended
        try:
            while True:
                try:
                    item = buffer.get_nowait()
                except queue.Empty:
                    item = take()
                    if item is _NOTHING:
                        return
                if item is _END:
                    ended = True
                    return
                if isinstance(item, _Failure):
                    ended = True
                    raise item.error
                yield item
        finally:
            stop()

    return _Consumer(consume(), stop)


class _Consumer(Iterator):
    """The consumer's side of `in_background`. Unlike a bare generator's, its close() also
    stops and waits for the worker when no item was taken yet (a generator never started skips
    its `finally`), so whoever owns the worker's source may close that source right after."""

    def __init__(self, items: Iterator, stop: Callable[[], None]) -> None:
        self._items = items
        self._stop = stop

    def __next__(self):
        return next(self._items)

    def close(self) -> None:
        self._items.close()
        self._stop()

