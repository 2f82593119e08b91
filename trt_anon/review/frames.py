"""The second pass: decode only the chosen frames of a file, by seeking, never the whole video.

A demux pass (packets only, no decoding) gives every frame's timestamp; each chosen frame is then
reached by seeking to the keyframe before it and decoding forward, or by decoding on from the last
chosen frame when no keyframe lies in between. Memory is one decoder and the thumbnails.
"""
from __future__ import annotations

import bisect
from pathlib import Path
from typing import Iterator

import av
import numpy as np

from ..media.files import is_image
from ..media.stills import Still, open_still


def _timestamps(container: av.container.InputContainer, stream) -> tuple[list[int], list[int]]:
    """(presentation timestamps of every frame, sorted; those of the keyframes)."""
    pts, keys = [], []
    for packet in container.demux(stream):
        if packet.pts is None or packet.size == 0:
            continue
        pts.append(packet.pts)
        if packet.is_keyframe:
            keys.append(packet.pts)
    pts.sort()
    keys.sort()
    return pts, keys


def _decode(container, stream) -> Iterator[av.VideoFrame]:
    """Every frame decoded goes through here (tests count them)."""
    return container.decode(stream)


def _decode_at(container, stream, targets: list[int], keys: list[int]) -> Iterator[tuple[int, av.VideoFrame]]:
    """Yield (pts, frame) for each of the sorted ``targets`` found; seeks only when a keyframe lies between."""
    frames = None
    last = None   # pts of the last frame decoded
    for t in targets:
        k = bisect.bisect_right(keys, t) - 1
        key = keys[k] if k >= 0 else None
        if frames is None or last is None or last >= t or (key is not None and key > last):
            container.seek(key if key is not None else t, stream=stream, backward=True, any_frame=False)
            frames = _decode(container, stream)
            last = None
        for frame in frames:
            if frame.pts is None:
                continue
            last = frame.pts
            if frame.pts >= t:
                break
        else:
            return
        if last == t:
            yield t, frame


def read_frames(path: Path, by_index: list[int] | None = None, by_pts: list[int] | None = None
                ) -> Iterator[tuple[int, av.VideoFrame]]:
    """Yield (index or pts, frame) for the frames of ``path`` at these presentation-order indices (or these
    timestamps), in order, one frame in memory at a time; a frame that cannot be found is left out.
    A file whose packets carry no usable timestamps (rare) is decoded from the start instead, counting frames.
    A photo is read with Pillow, as it was written: its one frame is index 0 at time 0.
    """
    if is_image(path):
        if 0 in (by_index if by_index is not None else by_pts or []):
            yield 0, open_still(path)
        return
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        pts, keys = _timestamps(container, stream)
        if by_index is not None:
            if not pts or len(set(pts)) != len(pts):
                yield from _sequential(container, stream, set(by_index))
                return
            want = {pts[i]: i for i in by_index if 0 <= i < len(pts)}
        else:
            want = {p: p for p in by_pts or []}
        for t, frame in _decode_at(container, stream, sorted(want), keys):
            yield want[t], frame


def _sequential(container, stream, wanted: set[int]) -> Iterator[tuple[int, av.VideoFrame]]:
    container.seek(0, stream=stream)
    found = 0
    for i, frame in enumerate(_decode(container, stream)):
        if i in wanted:
            yield i, frame
            found += 1
            if found == len(wanted):
                return


def to_rgb(frame: av.VideoFrame | Still) -> tuple[np.ndarray, int]:
    """(the frame as stored, 8-bit RGB in its own colour matrix; quarter turns a player applies to show it)."""
    if isinstance(frame, Still):
        return frame.rgb, frame.rotation // 90
    rgb = frame.to_ndarray(format="rgb24", src_colorspace=frame.colorspace, src_color_range=frame.color_range)
    return rgb, (int(frame.rotation or 0) // 90) % 4
