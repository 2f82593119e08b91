"""Decoding in a thread of its own, a batch ahead of the loop (the GPU path).

The loop's thread then detects, tracks and redacts batch k while batch k+1 is decoded: NVDEC, DALI or
PyAV and the upload wait on their own instead of in the loop, so a file's wall clock approaches its
slowest stage rather than the sum of its stages. Order is kept (one thread, one FIFO queue). An error in
the decoder is raised in the loop, after the batches before it; the loop ending early (its own error,
Ctrl-C) stops the thread and waits for it, so nothing is left decoding once a run is over.

CUDA: the thread runs its decoder's kernels on a stream of its own and hands each batch over with an
event recorded after them; the loop's stream waits for that event on the GPU, never on the host.
"""
from __future__ import annotations

import queue
import threading
from typing import Iterable, Iterator

from .batch import Batch

_END, _ERROR = object(), object()


class Ahead:
    """``decoder``'s batches, decoded up to ``depth`` batches ahead of the one the loop works on."""

    def __init__(self, decoder: Iterable[Batch], depth: int = 1) -> None:
        self.decoder, self.depth = decoder, depth
        self.name = getattr(decoder, "name", "pyav")

    @property
    def errors(self) -> int:
        return getattr(self.decoder, "errors", 0)

    def __iter__(self) -> Iterator[Batch]:
        import cupy as cp

        handed: queue.Queue = queue.Queue(maxsize=self.depth)
        stop = threading.Event()
        thread = threading.Thread(target=self._decode, args=(handed, stop), name="trt_anon-decode", daemon=True)
        thread.start()
        try:
            while True:
                batch, ready = handed.get()
                if batch is _END:
                    return
                if batch is _ERROR:
                    raise ready
                cp.cuda.get_current_stream().wait_event(ready)
                yield batch
        finally:
            stop.set()  # a thread waiting to hand over a batch sees it within 50 ms and ends, decoding no more
            thread.join()

    def _decode(self, handed: queue.Queue, stop: threading.Event) -> None:
        import cupy as cp

        def put(item) -> bool:
            while not stop.is_set():
                try:
                    handed.put(item, timeout=0.05)
                    return True
                except queue.Full:
                    pass
            return False

        batches = iter(self.decoder)
        try:
            with cp.cuda.Stream(non_blocking=True) as stream:
                for batch in batches:
                    if not put((batch, stream.record())):
                        return
            put((_END, None))
        except BaseException as exc:  # the loop raises it, after the batches decoded before it
            put((_ERROR, exc))
        finally:
            close = getattr(batches, "close", None)  # a generator's clean-up (ThreadedDecoder.end) runs here
            if close is not None:
                close()
