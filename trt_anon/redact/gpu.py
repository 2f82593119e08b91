"""The redaction styles on the GPU: one CUDA block per cell, frames redacted in place, batch at a time.

The host turns boxes into a list of cells (``cells.cell_groups``, tested on the CPU), one group per
cell size, each cell once in its group, and the style's kernels (``styles/``) run on each group in
turn, largest cells first. Integer arithmetic throughout: the results equal the NumPy references exactly.
The kernels run on the redactor's own stream, joined to the caller's by events both ways (``cuda.on_stream``).
"""
from __future__ import annotations

import numpy as np

from .cells import cell_groups


class CupyRedactor:
    name = "cupy"

    def __init__(self, cell: int, style: str = "mosaic", color: tuple[int, int, int] = (0, 0, 0),
                 margin: tuple[float, float] = (12, 0.1)) -> None:
        import cupy as cp

        from . import cell_sizes
        from .styles import STYLES

        self.cp, self.cell, self.cell_sizes, self.style, self.color = cp, cell, cell_sizes, STYLES[style], color
        self.margin = margin
        self.stream = None  # its own CUDA stream, made on first use (by the thread that redacts)
        self.kernels = [cp.RawKernel(source, function) for source, function in self.style.kernels]
        for kernel in self.kernels:
            kernel.compile()  # now, when the stage is chosen: a compiler failure falls back to the CPU

    def __call__(self, frames, boxes: list[np.ndarray]):
        from ..cuda import device_frames, on_stream

        cp = self.cp
        if self.stream is None:
            self.stream = cp.cuda.Stream(non_blocking=True)
        with on_stream(self.stream):  # after what the caller's stream queued (the frames' decoding)
            batch = device_frames(frames)  # redacted in place only if it was one contiguous uint8 array
            height, width = batch.shape[1:3]
            sizes = [self.cell_sizes(b, self.cell, self.style.name, self.margin) for b in boxes]
            for c, cells in cell_groups(boxes, sizes, height, width):
                self.style.launch(cp, self.kernels, batch, cp.asarray(cells), c, self.color)
            done = self.stream.record()
        cp.cuda.get_current_stream().wait_event(done)  # what the caller queues next (the encoder) comes after
        return batch
