"""Write-behind: one thread writes piece i while the caller computes piece i+1.

DuckDB, Polars and the Parquet/CSV writers release the GIL, so a write overlaps the next
piece's compute and the second core does the writing. At most `in_flight` pieces wait to be
written, so memory stays bounded by a few pieces. An error in a write is raised at the next
`submit` or when the block ends; on any error the writes not yet started are cancelled, so no
write continues into something the caller is about to discard.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any


class WriteBehind:
    def __init__(self, name: str, in_flight: int = 1):
        self.name, self.in_flight = name, in_flight
        self.pending: deque[Future] = deque()
        self.pool: ThreadPoolExecutor | None = None

    def __enter__(self) -> WriteBehind:
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=self.name)
        return self

    def submit(self, write: Callable[..., Any], *args: Any) -> None:
        """Queue `write(*args)`, first waiting while more than `in_flight` writes are queued
        (the wait raises an earlier write's error)."""
        assert self.pool is not None, "use WriteBehind in a with block"
        self.pending.append(self.pool.submit(write, *args))
        while len(self.pending) > self.in_flight:
            self.pending.popleft().result()

    def drain(self) -> None:
        """Wait for every queued write (raising the first error)."""
        while self.pending:
            self.pending.popleft().result()

    def __exit__(self, kind, error, trace) -> None:
        assert self.pool is not None
        try:
            if kind is None:
                self.drain()
        finally:
            self.pool.shutdown(wait=True, cancel_futures=True)
            self.pending.clear()
