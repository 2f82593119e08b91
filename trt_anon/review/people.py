"""One card per person on the review page: the tracks of one person (who left and came back, or passed behind
someone) grouped by their faces, conservatively (when unsure, two cards: a card wrongly merged would keep or
redact a stranger with the person).

Each track's first, largest and last detected faces are read from the input and embedded (``consent.Embedder``, the
``[consent]`` extra); two groups merge only when every face of one is within ``consent.THRESHOLD`` of every face
of the other (complete linkage), and tracks a --keep-face run matched go with the person they matched. A track
without a face good enough to compare (small, turned away) stays a card of its own, as every track does without
the extra.
"""
from __future__ import annotations

import numpy as np

from .. import consent
from ..errors import ConfigError
from .stats import Card


def embedder() -> consent.Embedder | None:
    """The embedding network, or None without the ``[consent]`` extra (then every track is a card of its own)."""
    try:
        return consent.shared_embedder()
    except ConfigError:
        return None


def faces(cards: list[Card], frames, embedder: consent.Embedder) -> dict[int, list[np.ndarray]]:
    """Each track's embeddings, from its first, largest and last detected face (``Card.faces``) on the input's
    frames (``frames``: (index, RGB as stored, quarter turns to show it) in order, each of those among them)."""
    at: dict[int, list[tuple[int, list[float]]]] = {}
    for card in cards:
        for frame, box in card.faces:
            at.setdefault(frame, []).append((card.track["id"], box))
    out: dict[int, list[np.ndarray]] = {}
    for i, rgb, turns in frames:
        for track, box in at.get(i, ()):
            b = np.asarray(box, np.float32)
            if min(b[2] - b[0], b[3] - b[1]) < consent.MIN_FACE:
                continue
            crop, cbox = consent.face_crop(rgb, b, 90 * turns)
            points, shape = embedder.landmarks(crop, cbox)
            if consent.frontal(points):
                out.setdefault(track, []).append(embedder.embed(crop, shape))
    return out


def group(cards: list[Card], embeddings: dict[int, list[np.ndarray]]) -> list[list[Card]]:
    """The cards grouped into people, in order of first appearance: tracks matched to the same consenting person
    together; the others merged greedily, closest first, while every face of the two groups is within the
    threshold of each other and their tracks have the same action."""
    groups: list[list[Card]] = []
    by_person: dict[str, list[Card]] = {}
    for card in cards:
        person = card.track.get("person")
        if person is not None and card.track.get("action") == "matched":
            if person not in by_person:
                by_person[person] = []
                groups.append(by_person[person])
            by_person[person].append(card)
        else:
            groups.append([card])
    vectors = [[e for c in g for e in embeddings.get(c.track["id"], [])] for g in groups]
    while True:
        best, pair = consent.THRESHOLD, None
        for a in range(len(groups)):
            for b in range(a + 1, len(groups)):
                if not vectors[a] or not vectors[b] or groups[a][0].track["action"] != groups[b][0].track["action"]:
                    continue   # (tracks decided apart, in a decisions file, stay apart)
                far = max(float(np.linalg.norm(x - y)) for x in vectors[a] for y in vectors[b])
                if far < best:
                    best, pair = far, (a, b)
        if pair is None:
            return groups
        a, b = pair
        groups[a] += groups.pop(b)
        vectors[a] += vectors.pop(b)
