"""The redaction styles, by name. Each is a module here named after it, holding its NumPy reference and
the CUDA kernels that must give the same pixels, and a ``STYLE`` object:

- ``name``; ``kernels``: (CUDA source, function) pairs, compiled when the GPU redactor is made;
- ``cells(boxes, cells)``: the cell size per box, from the mosaic's (the blur's are coarser on large faces);
- ``redact(frame, boxes, cells, color)``: the reference, in place on one (H, W, 3) frame;
- ``launch(cp, kernels, batch, cells, c, color)``: the kernels on a batch, for the (K, 3) cells of size ``c``.

To add a style: a module here, and its name in ``config.STYLES`` (which the option and the CLI accept).
"""
from __future__ import annotations

from importlib import import_module

from ...config import STYLES as NAMES

STYLES = {name: import_module(f"{__name__}.{name}").STYLE for name in NAMES}
