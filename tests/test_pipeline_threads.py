"""`in_background`: stages on reusable worker threads, with cancel, exception hand-off and close."""

from __future__ import annotations

import threading
import time

import pytest

from vidface.workers import in_background


def _numbers(count: int, seen: list, closed: threading.Event | None = None, slow_close: float = 0.0):
    """0..count-1, noting the thread (ident, name) that runs it; `closed` is set on close."""
    try:
        current = threading.current_thread()
        seen.append((threading.get_ident(), current.name))
        yield from range(count)
    finally:
        time.sleep(slow_close)
        if closed is not None:
            closed.set()


def test_calls_run_on_reused_threads_named_by_stage() -> None:
    before = threading.active_count()
    seen: list = []
    for _ in range(6):
        cancel = threading.Event()
        decode = in_background(_numbers(5, seen), cancel, "decode-test")
        model = in_background((n * 2 for n in decode), cancel, "model-test")
        assert list(model) == [0, 2, 4, 6, 8]
        assert not cancel.is_set()
    assert {name for _, name in seen} == {"vidface-decode-test"}
    assert len({ident for ident, _ in seen}) == 1  # each round's decode stage ran on the same thread
    assert threading.active_count() <= before + 2  # two stages ran at once: at most two new threads


def test_each_stage_goes_back_to_its_own_thread() -> None:
    """Two stages running at the same time, call after call, keep their threads."""
    first: list = []
    second: list = []
    for _ in range(4):
        cancel = threading.Event()
        a = in_background(_numbers(3, first), cancel, "stage-a")
        b = in_background(_numbers(3, second), cancel, "stage-b")
        assert list(zip(a, b)) == [(0, 0), (1, 1), (2, 2)]
        list(a), list(b)
    assert len({ident for ident, _ in first}) == 1
    assert len({ident for ident, _ in second}) == 1
    assert first[0][0] != second[0][0]


def test_an_exception_reaches_the_consumer_and_the_thread_is_reused() -> None:
    def failing(seen: list):
        seen.append(threading.get_ident())
        yield 1
        raise ValueError("bad frame 2")

    seen: list = []
    for _ in range(3):
        items = in_background(failing(seen), threading.Event(), "failing-test")
        with pytest.raises(ValueError, match="bad frame 2"):
            assert list(items) == [1]
    assert len(set(seen)) == 1


def test_closing_early_cancels_and_waits_for_the_source_to_close() -> None:
    cancel = threading.Event()
    closed = threading.Event()
    items = in_background(_numbers(10_000, [], closed, slow_close=0.2), cancel, "close-test", maxsize=2)
    assert next(items) == 0
    items.close()
    assert cancel.is_set()  # sibling stages sharing `cancel` stop too
    assert closed.is_set()  # the source was closed on its thread before close() returned


def test_closing_before_the_first_item_also_waits_for_the_source_to_close() -> None:
    """A consumer closed before it took anything (a later stage failed first) still stops the
    thread and waits for it, so the caller may close what the source reads from right after."""
    cancel = threading.Event()
    closed = threading.Event()
    items = in_background(_numbers(10_000, [], closed, slow_close=0.2), cancel, "unstarted-test", maxsize=2)
    items.close()
    assert cancel.is_set() and closed.is_set()


def test_cancel_stops_the_stage_and_the_consumer_ends() -> None:
    cancel = threading.Event()
    closed = threading.Event()
    items = in_background(_numbers(10_000, [], closed), cancel, "cancel-test", maxsize=2)
    assert next(items) == 0
    cancel.set()
    assert len(list(items)) <= 3  # what was already queued, then the end
    assert closed.is_set()


class _SlowToClose:
    """Three items, then a close() that takes a while (like a decoder releasing its file)."""

    def __init__(self) -> None:
        self.items = iter(range(3))
        self.closed = threading.Event()

    def __iter__(self):
        return self

    def __next__(self) -> int:
        return next(self.items)

    def close(self) -> None:
        time.sleep(0.2)
        self.closed.set()


def test_a_finished_stage_does_not_cancel_its_siblings() -> None:
    """The consumer sees the end while the stage is still closing its source: that is a normal
    end, which must not set the shared cancel (that would stop the other stages mid-run)."""
    cancel = threading.Event()
    source = _SlowToClose()
    assert list(in_background(source, cancel, "end-test")) == [0, 1, 2]
    assert source.closed.is_set()
    assert not cancel.is_set()


def test_each_queue_says_which_side_waited() -> None:
    """A slow reader makes the stage wait for room; a slow stage makes its reader wait for items."""
    from vidface.workers import queue_waits

    def slowly(items, seconds: float):
        for item in items:
            time.sleep(seconds)
            yield item

    before = queue_waits()
    cancel = threading.Event()
    assert list(slowly(in_background(range(40), cancel, "waits-fast-stage", maxsize=2), 0.01)) == list(range(40))
    assert list(in_background(slowly(range(20), 0.02), cancel, "waits-slow-stage")) == list(range(20))
    waits = queue_waits()
    fast_room, fast_reader, fast_runs = waits["waits-fast-stage"]
    slow_room, slow_reader, slow_runs = waits["waits-slow-stage"]
    assert "waits-fast-stage" not in before and "waits-slow-stage" not in before and fast_runs == slow_runs == 1
    assert fast_room > 0.2 and fast_reader < fast_room / 4  # about 40 x 10 ms spent waiting for room
    assert slow_reader > 0.2 and slow_room == 0.0  # about 20 x 20 ms spent waiting for items


def test_a_run_logs_the_waits_at_its_stage_queues(tmp_path, cli, caplog) -> None:
    import logging

    from media import write_video

    source = write_video(tmp_path / "in.mp4", frames=12, size=(96, 64))
    with caplog.at_level(logging.INFO, logger="vidface.pipeline"):
        code, _, err = cli("restore", "--model", "none", source, tmp_path / "out.mp4", "--no-progress")
    assert code == 0, err
    [line] = [record.getMessage() for record in caplog.records if "stage waits" in record.getMessage()]
    assert line.startswith("out.mp4: stage waits (s, stage for room / its reader for it): decode ")
    assert ", process " in line and line.count("/") == 3  # the two stages of this run, none of earlier tests'
