"""Presentation timestamps from the container (PyAV demux, no decoding), for GPU decoders.

GPU decoders hand back frames in presentation order but not the container's exact timestamps;
these come from the packets, re-ordered from decode order through a small heap, so variable
frame rate and B-frames survive and memory stays bounded.
"""
from __future__ import annotations

import heapq
from pathlib import Path
from typing import Iterator

import av

from ..errors import InputError

REORDER = 64  # more than any H.264/HEVC reorder depth


def presentation_pts(path: Path) -> Iterator[int]:
    with av.open(str(path)) as container:
        from ..media.container import video_stream
        stream = video_stream(container)
        heap: list[int] = []
        last = None
        for packet in container.demux(stream):
            if packet.size == 0:
                continue
            t = packet.pts if packet.pts is not None else packet.dts
            if t is None:
                t = (last + 1) if last is not None else 0
            last = t
            heapq.heappush(heap, t)
            if len(heap) > REORDER:
                yield heapq.heappop(heap)
        while heap:
            yield heapq.heappop(heap)


def take(pts: Iterator[int], n: int, path: Path, decoder: str) -> list[int]:
    """The next ``n`` container timestamps for ``n`` decoded frames; a GPU decoder that returns
    more frames than the container lists is refused rather than given invented timestamps."""
    out = [next(pts, None) for _ in range(n)]
    if None in out:
        raise InputError(f"{path}: {decoder} decoded more frames than the container lists; use --backend cpu")
    return out


def check_exhausted(pts: Iterator[int], path: Path, decoder: str) -> None:
    """After the last batch: a GPU decoder that returned fewer frames than the container lists has
    dropped some, and the timestamps given out were shifted; refuse (nothing is written)."""
    if next(pts, None) is not None:
        raise InputError(f"{path}: {decoder} decoded fewer frames than the container lists (damaged file?); "
                         "use --backend cpu")
