"""The write-behind thread (`pipelines.core.write_behind`): writes keep their order, at most
`in_flight` wait, an error surfaces in the caller and stops the writes queued after it."""

import threading
import time

import pytest

from pipelines.core.write_behind import WriteBehind


def test_writes_run_in_order_on_one_other_thread_and_are_all_done_at_the_end():
    done, threads = [], set()

    def write(i):
        time.sleep(0.01 if i % 2 else 0)
        threads.add(threading.current_thread().name)
        done.append(i)

    with WriteBehind("t") as behind:
        for i in range(10):
            behind.submit(write, i)
    assert done == list(range(10))
    assert len(threads) == 1 and threading.current_thread().name not in threads


def test_submit_waits_while_more_than_in_flight_writes_are_queued():
    release, started = threading.Event(), []

    def write(i):
        started.append(i)
        release.wait(5)

    with WriteBehind("t", in_flight=1) as behind:
        behind.submit(write, 0)
        waiter = threading.Thread(target=behind.submit, args=(write, 1))
        waiter.start()
        waiter.join(0.2)
        assert waiter.is_alive(), "the second submit returned while the first write ran"
        release.set()
        waiter.join(5)
    assert started == [0, 1]


def test_an_error_in_a_write_is_raised_and_the_writes_queued_after_it_do_not_run():
    done = []

    def write(i):
        if i == 1:
            raise ValueError("bucket 1 broke")
        time.sleep(0.05)
        done.append(i)

    with pytest.raises(ValueError, match="bucket 1 broke"), WriteBehind("t", 3) as behind:
        for i in range(6):
            behind.submit(write, i)
    time.sleep(0.3)
    assert 0 in done and not {3, 4, 5} & set(done)
