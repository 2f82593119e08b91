"""Keep the people who consented (``--keep-face PHOTO``): a face whose track matches a reference photo stays
visible; every other face is redacted as always.

Fail safe, because a person wrongly kept is a leak:

- A reference is a photo (or a folder of photos) of one person, with exactly one face in each; each is embedded as
  it is and brightened (``EXPOSURES``: a face lit brighter in the video than in its photo has its bright parts
  clipped, and is compared with the photo clipped alike).
- A track's faces are compared by a face embedding (dlib's ResNet, 128 numbers, run in ONNX Runtime; the
  ``[consent]`` extra) with a threshold measured on real faces so that no two different people on the measured
  set come that close (``THRESHOLD``, docs/quality.md: ``scripts/consent_threshold.py``). Only good faces are
  compared: at least ``MIN_FACE`` px, surely detected, looking at the camera, the best of each few frames by size,
  score and sharpness; a whole face before one that may be partly hidden.
- A track is followed in stretches: frames where it is detected surely and where no other face could have taken its
  place (the areas two faces swept since the last look do not meet, or each face's box stayed far nearer its own than
  the other's; else a tracker may swap two people). A miss, a weak or partly hidden detection, or a face that may have
  taken its place ends a stretch; the next one starts unconfirmed. A face within a tenth of its width of another one
  (it may be partly behind the other's head), or whose box has narrowed or flattened against the track's own shape
  (partly hidden: by a shoulder), or cut by the frame's edge, counts only where it matches: a person's own face so
  hidden often embeds far from their photo, other people's faces so hidden or beside theirs never came near it
  (measured); the stretch goes on through one that matches, and ends at one that does not or looks away (the frames
  after it show only from a match after them); after ``SAMPLES`` such faces since the track's last match, they are
  compared only every ``lookback`` - 8 frames. A stretch is shown once ``SAMPLES`` of its faces matched the same
  person, and then only from its first sure detection to its last matching face: a frame is shown only with a match
  after it, so the frames after a swap the rules above do not see (a cut between two people framed alike) are never
  shown. A shown stretch is compared again every ``lookback`` - 8 frames, on its best face of the last few, so that
  its frames get that match before they are written, and on its last whole face when it ends (where it ends on a face
  found but no longer sure, or on faces not whole, the last one ``SETTLE`` frames before those: the faces just before
  are those something had begun to hide).
- One whole face of a track that matches nobody, or any face that matches another person than before, and the
  track is redacted from then on, every frame not yet written included, whatever matched before.

The decision is made on frames as they are tracked, and a frame's boxes are final ``lookback`` frames later:
a stretch confirmed within that delay shows from its start. Live, a person is therefore redacted until matched;
a short ``--latency`` (a short ``lookback``) means more comparisons, or fewer frames shown.
"""
from __future__ import annotations

import dataclasses
import functools
import importlib.util
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import cv2
import numpy as np

from .cuda import array_module
from .detect.detections import HIT, Regions
from .errors import ConfigError, InputError
from .facenet import SIZE, Network
from .media.files import IMAGE_EXTS

INSTALL_HINT = "pip install 'trt_anon[consent]'"
# The embedding distance under which two faces are the same person: under the closest pair of different people
# on the measured set (docs/quality.md, "Keeping consenting people"), with a margin.
THRESHOLD = 0.34
MIN_FACE = 48       # px, the face box's shorter side: smaller faces are never compared (their embeddings drift)
MIN_REFERENCE = 80  # px: a reference photo's face must be at least this large
SAMPLES = 3         # faces of a stretch that must match the same person before it is shown
SPACING = 4         # frames: a stretch's faces are compared at most once per this many (the best of them)
NEAR = 0.1          # a face whose box, grown by this share of its width per side, meets another one grown alike may
                    # be partly behind the other's head (its hair and shoulders reach past its face box): not whole
SHAPE = 0.08        # a face box whose height-to-width ratio is off the track's own by more than this share is partly
                    # hidden (narrowed from a side, cut at the top or bottom): not whole
PAD = 0.05          # of a face's width per side, added to the area it swept since the last look (the detector's
                    # jitter): where two such areas meet, the tracker may have swapped the two faces
LOST = 0.25         # of a face's width per side, plus its motion since: where a face not found at a look may be
APART = 3           # two faces found at this look and the last whose swept areas meet are still told apart where
                    # each one's box is this many times nearer its own box at the last look than the other's (one
                    # in front of the other): a swap there would be both faces jumping into each other's box
MIN_SCORE = 0.7     # detection score: a face scored lower (half hidden, dark, blurred) is not compared
SETTLE = 4          # frames: a stretch that ends on a face no longer sure, or on faces not whole, is compared on its
                    # last whole face at least this many frames before, not on those a hiding object, another face,
                    # the frame's edge or a turn began to spoil
BORDER = 2          # px: a face box this near the frame's edge is cut by it: it counts only where it matches
FRONTAL = 0.25      # the nose's sideways offset from between the eyes, in eye distances: at most this (a face
                    # turned further embeds far from its frontal photo)
EXPOSURES = (1.0, 1.5)  # a reference photo is embedded as it is and with its values times 1.5, clipped as a camera
                    # clips them: a face lit brighter than in its photo (sun, a backlit scene's exposure) embeds far
                    # from the photo (hers at 1.5x: 0.33-0.39), near the photo brightened alike (0.14-0.23); no one
                    # else came nearer than the closest different pair (measured). ×0.5 and ×2 did bring people nearer


def _models() -> tuple[str, str]:
    """The paths of dlib's 5-point landmark and face recognition models (the ``face_recognition_models``
    package, CC0), found without importing it (its ``__init__`` needs pkg_resources)."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(f"--keep-face needs the face recognition model, which is not installed: {INSTALL_HINT}")
    folder = Path(list(spec.submodule_search_locations)[0]) / "models"
    return (str(folder / "shape_predictor_5_face_landmarks.dat"),
            str(folder / "dlib_face_recognition_resnet_model_v1.dat"))


class Embedder:
    """dlib's face recognition network: a face (an RGB crop and its box) to 128 numbers; faces of one person are
    close (Euclidean distance), different people far. dlib finds the 5 points and cuts the aligned chip; the
    network runs in ONNX Runtime (``facenet``: the same weights, over ten times faster than dlib's own CPU code)."""

    def __init__(self) -> None:
        try:
            import dlib
        except ImportError:
            raise ConfigError(f"--keep-face needs dlib, which is not installed: {INSTALL_HINT}") from None
        shape, net = _models()
        self.dlib = dlib
        self.shape = dlib.shape_predictor(shape)
        self.net = Network(net)

    def landmarks(self, rgb: np.ndarray, box):
        """dlib's 5 points (eye corners, nose) of the face in ``box``, given as dlib's detector draws a face (a
        square of the face's width on its centre): (the points as an array, dlib's shape for ``embed``)."""
        x1, y1, x2, y2 = (float(v) for v in box)
        cx, cy, r = (x1 + x2) / 2, (y1 + y2) / 2, (x2 - x1) / 2
        shape = self.shape(rgb, self.dlib.rectangle(int(cx - r), int(cy - r), int(cx + r), int(cy + r)))
        return np.array([(p.x, p.y) for p in shape.parts()], np.float32), shape

    def embed(self, rgb: np.ndarray, shape) -> np.ndarray:
        """The embedding of the face whose ``landmarks`` gave ``shape``: aligned on them by dlib, as dlib's
        ``compute_face_descriptor`` aligns it (a 150 px chip, a quarter of padding)."""
        return self.bracket(rgb, shape, (1.0,))[0]

    def bracket(self, rgb: np.ndarray, shape, gains=None) -> np.ndarray:
        """The embeddings of that face with its values times each of ``gains`` (clipped; ``EXPOSURES`` unless
        given), one row each: a reference photo's exposure bracket."""
        gains = EXPOSURES if gains is None else gains
        chip = np.asarray(self.dlib.get_face_chip(rgb, shape, size=SIZE, padding=0.25))
        chips = [chip if g == 1 else np.clip(chip.astype(np.float32) * g, 0, 255).astype(np.uint8) for g in gains]
        return self.net(np.stack(chips))


@functools.lru_cache(maxsize=1)
def shared_embedder() -> Embedder:
    """The process's one ``Embedder``: its models read and its network built once (0.2 s), for the reference
    photos and every run and file after them."""
    return Embedder()


def frontal(points: np.ndarray) -> bool:
    """Whether dlib's 5 points say the face looks at the camera: the nose between the eyes (a face turned
    sideways embeds far from its frontal photo; a tilted head does not: dlib aligns the eyes level first)."""
    right, left, nose = points[0:2].mean(axis=0), points[2:4].mean(axis=0), points[4]
    d = float(np.linalg.norm(left - right))
    if d < 1:
        return False
    side = abs(float(np.dot(nose - (left + right) / 2, (left - right) / d)))
    return side <= FRONTAL * d


def sharpness(grey: np.ndarray) -> float:
    """How sharp a face is: the variance of its Laplacian at 64 x 64 (a blurred or smeared face scores low)."""
    return float(cv2.Laplacian(cv2.resize(grey, (64, 64), interpolation=cv2.INTER_AREA), cv2.CV_32F).var())


@dataclass(frozen=True)
class Person:
    """Who consented: a name (the photo's or folder's) and the embeddings of each photo of them, an exposure
    bracket each (``EXPOSURES``); a face's distance to them is to the nearest."""

    name: str
    photos: tuple[str, ...]
    embeddings: np.ndarray      # (photos x exposures, 128)

    def distance(self, e: np.ndarray) -> float:
        return float(np.linalg.norm(self.embeddings - e[None], axis=1).min())


def _photos(path: Path) -> list[Path]:
    if path.is_dir():
        found = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTS)
        if not found:
            raise ConfigError(f"--keep-face {path}: the folder has no photos")
        return found
    if not path.is_file():
        raise ConfigError(f"--keep-face {path}: no such file or folder")
    return [path]


def people(paths: tuple[str, ...]) -> tuple[Person, ...]:
    """The consenting people, one per path (a photo, or a folder of photos of one person); one-line errors for a
    photo that cannot be read, has no face, more than one, or one too small. Read once per set of files."""
    stamp = []
    for p in paths:
        for photo in _photos(Path(p)):
            st = photo.stat()
            stamp.append((str(photo), st.st_mtime_ns, st.st_size))
    return _people(tuple(paths), tuple(stamp))


@functools.lru_cache(maxsize=8)
def _people(paths: tuple[str, ...], stamp: tuple) -> tuple[Person, ...]:
    """``people``, cached by the files' names, times and sizes (a run over many files reads the photos once)."""
    from .config import Config
    from .detect import select_detector
    from .frames import rotate_for_display
    from .media.stills import open_still

    model = shared_embedder()
    detector = select_detector(Config(backend="cpu"), gpu=False)
    out = []
    for p in paths:
        path = Path(p)
        vectors, names = [], []
        for photo in _photos(path):
            try:
                still = open_still(photo)
            except InputError as exc:
                raise ConfigError(f"--keep-face {exc}") from None
            rgb = rotate_for_display(still.rgb[None], still.rotation)[0]
            found = detector(rgb[None])[0]
            faces = found.xyxy[found.kind == HIT]
            if len(faces) == 0:
                raise ConfigError(f"--keep-face {photo}: no face found; use a photo where the face is clear")
            if len(faces) > 1:
                raise ConfigError(f"--keep-face {photo}: {len(faces)} faces; use a photo of the one person only "
                                  "(crop it)")
            box = faces[0]
            side = float(min(box[2] - box[0], box[3] - box[1]))
            if side < MIN_REFERENCE:
                raise ConfigError(f"--keep-face {photo}: the face is {side:.0f} px; use one of at least "
                                  f"{MIN_REFERENCE} px")
            vectors.append(model.bracket(rgb, model.landmarks(rgb, box)[1]))
            names.append(str(photo))
        out.append(Person(path.stem if path.is_file() else path.name, tuple(names), np.concatenate(vectors)))
    return tuple(out)


class _Face(NamedTuple):
    """A face of a stretch kept to be compared (its crop cut at once: the frame is not kept)."""

    quality: float               # size, score and sharpness: the best of a window is compared
    frame: int
    crop: np.ndarray             # RGB, as a viewer sees it (``face_crop``)
    box: np.ndarray              # the face's box in the crop
    ratio: float                 # its box's height to width
    whole: bool                  # clear of other faces, of the track's shape, inside the frame


@dataclass
class _Stretch:
    """Frames where a track is detected surely and no other face can have taken its place: shown once confirmed."""

    start: int                   # its first sure detection
    end: int                     # its last one so far
    matches: int = 0             # its faces that matched
    last_match: int = -1         # the frame of its last matching face: the last frame it may show
    best: _Face | None = None    # the best face of the window's last frames (a whole one before one not whole)
    recent: list[_Face] = field(default_factory=list)  # its whole faces since (the last SETTLE + 1 of them): one
                                                       # is compared when the stretch ends
    since: int = 0               # the first frame of the window: after the last comparison
    doubt: bool = False          # it began after a face that matched nobody: shown only from its first match
    first_match: int = -1

    @property
    def shown(self) -> bool:
        return self.matches >= SAMPLES


@dataclass
class _Followed:
    """What the keeper knows of one track."""

    person: int | None = None    # the person its faces matched
    rejected: bool = False       # a face matched nobody or someone else: redacted from then on
    misses: int = 0              # its faces not whole that matched nobody (or looked away) since its last match:
                                 # after SAMPLES, such faces are compared only every ``every`` frames
    doubt: bool = False          # such a face came after its last match: its next stretch is in doubt
    stretches: list[_Stretch] = field(default_factory=list)   # the open one last
    open: bool = False
    matched_faces: int = 0       # its faces that matched, in all its stretches
    farthest: float = 0.0        # ... the largest distance among them
    seen: int = 0                # the last frame it was tracked in
    box: np.ndarray | None = None   # its last detection, in frame ``hit``
    hit: int = -1
    step: float = 0.0            # px per frame its box moves: the tracker's measured motion, else between its last
                                 # two detections
    shapes: list = field(default_factory=list)    # height-to-width ratios of its sure detections (the last 32)
    matched: list = field(default_factory=list)   # ... of its faces that matched (the last 32)
    kept_frames: int = 0

    def shape(self) -> float:
        """The ratio of its whole face: the median of its faces that matched, else of its sure detections."""
        return float(np.median(self.matched or self.shapes))


class Keeper:
    """Decides, per track, which of its frames stay visible (``Regions.kept``): ``look`` at every frame the
    detector looked at, after the tracker took it; ``mark`` the frames that became final."""

    def __init__(self, persons: tuple[Person, ...], lookback: int, rotation: int = 0,
                 embedder: Embedder | None = None) -> None:
        """``lookback``: how many frames after a frame its boxes are final (a frame is shown only if a face
        after it matched before then)."""
        self.persons = persons
        # a shown stretch's comparisons: one every ``every`` frames, on its best face of the last SPACING of them,
        # so that each frame has a match after it before its boxes are final (lookback frames on)
        self.every = max(SPACING, lookback - 2 * SPACING)
        self.rotation = rotation
        self.embedder = embedder or shared_embedder()
        self.tracks: dict[int, _Followed] = {}
        self.alive: set[int] = set()   # the tracks at the last look
        self.last = -1           # the frame of the last look
        self.compared = 0        # faces embedded
        self.seconds = 0.0       # spent choosing, cropping and embedding faces

    def look(self, f: int, frame, tracker) -> None:
        """Frame ``f`` (as stored, NumPy or CuPy), which the detector looked at and the tracker has taken.

        Reads the tracker's live tracks: each one's number (``id``), last box, the frame of its last detection
        (``last_hit``), whether that detection was sure and whole (``sure``) and its ``score``; and their measured
        ``motion()``."""
        started = time.perf_counter()
        try:
            self._look(f, frame, tracker)
        finally:
            self.seconds += time.perf_counter() - started

    def _look(self, f: int, frame, tracker) -> None:
        alive = list(tracker.tracks)
        last, self.last = self.last, f
        self.alive = {int(t.id) for t in alive}
        for track, state in self.tracks.items():
            if track not in self.alive:  # gone: its stretch ends at its last sure detection
                self._close(state)
        if not alive:
            return
        states = [self.tracks.setdefault(int(t.id), _Followed()) for t in alive]
        for state, (_, velocity) in zip(states, tracker.motion()):
            if velocity is not None:  # fitted over its recent detections: steadier than its last two
                state.step = float(np.abs(velocity).max())
        swapped = _swapped(alive, states, f, last)
        beside = _beside(np.stack([np.asarray(t.box, np.float32) for t in alive]))
        for t, state, risky, near in zip(alive, states, swapped, beside):
            state.seen = f
            if t.last_hit == f:
                box = np.asarray(t.box, np.float32)
                if state.box is not None and state.hit < f:
                    state.step = float(np.abs(box - state.box).max()) / (f - state.hit)
                state.box, state.hit = box, f
            if state.rejected:
                continue
            if not (t.last_hit == f and t.sure and not risky):
                self._close(state, spoilt=t.last_hit == f and not t.sure)
                continue
            if not state.open:
                state.stretches.append(_Stretch(f, f, since=f, doubt=state.doubt))
                state.open = True
            s = state.stretches[-1]
            s.end = f
            state.shapes = [*state.shapes[-31:], _ratio(t.box)]
            # a face beside another may be partly behind its head (which of the two is in front, the boxes do not
            # say), and a box off the track's own shape is partly hidden: for either, only a match counts
            whole = not near and abs(state.shapes[-1] / state.shape() - 1) <= SHAPE
            self._consider(state, s, f, frame, t.box, float(t.score), whole)

    def _close(self, state: _Followed, spoilt: bool = False) -> None:
        """The open stretch ends (a miss, a weak detection, a face that may have taken its place, a face not whole that
        matched nobody, the end): its last whole face not compared yet is compared now (its frames up to there may
        then show); kept only if it was shown."""
        if state.open:
            s = state.stretches[-1]
            # ``spoilt``: it ends on a face found but no longer sure (weak, or much smaller): the faces just before are
            # those a hiding object, the frame's edge or a turn had begun to spoil, so the last whole one at least
            # SETTLE frames before is compared (not one of them; those before a face not whole are gone already)
            settled = [r for r in s.recent if not spoilt or r.frame <= s.end - SETTLE]
            if settled:  # (a face since the last comparison)
                self._compare(state, s, settled[-1])
            if state.rejected:
                return
            state.open = False
            if not s.shown:
                state.stretches.pop()

    def finish(self) -> None:
        """The end of the stream: every open stretch ends (its last good face compared)."""
        started = time.perf_counter()
        for state in self.tracks.values():
            self._close(state)
        self.seconds += time.perf_counter() - started

    def _consider(self, state: _Followed, s: _Stretch, f: int, frame, box: np.ndarray, score: float,
                  whole: bool) -> None:
        """A good face of the stretch (large, sure, sharp) is a candidate: until the stretch is shown, the best of
        each ``SPACING`` frames is compared; then the best of the last ``SPACING`` frames of every ``every``. A face
        not ``whole`` (beside another, of another shape, or cut by the frame's edge) is one only where no whole face
        is; it is compared every ``SPACING`` frames, shown or not (more hidden from one look to the next, it may stop
        matching, and its frames show only up to the last that matched), every ``every`` once ``SAMPLES`` such faces
        of the track matched nobody since its last match. One that matches nobody ends the stretch, and the next one
        shows only from its first match."""
        x1, y1, x2, y2 = (float(v) for v in box)
        side = min(x2 - x1, y2 - y1)  # the smaller side, whichever way the frame is turned
        height, width = frame.shape[:2]
        # a face cut by the frame's edge is partly hidden too; one half hidden (the detector less sure) embeds as
        # someone else
        whole = whole and x1 > BORDER and y1 > BORDER and x2 < width - BORDER and y2 < height - BORDER
        if not whole:   # the whole faces just before it may have been becoming hidden: never compared
            s.recent = [r for r in s.recent if r.frame <= f - SETTLE]
        due = self.every if whole and s.shown or not whole and state.misses >= SAMPLES else SPACING
        window = f - s.since >= due - SPACING
        # (a face not whole is cropped only where a comparison is due: it is never one of ``recent``)
        if side >= MIN_FACE and score >= MIN_SCORE and (whole or f - s.since >= due - 1):
            crop, cbox = face_crop(frame, box, self.rotation)
            quality = 0.0  # scored only where it may become ``best``: ``recent`` is compared as it is
            if window:
                grey = cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY)
                bx = [int(max(v, 0)) for v in cbox]
                quality = min(side, 160.0) * score * min(1.0, sharpness(grey[bx[1]:bx[3], bx[0]:bx[2]]) / 200)
            face = _Face(quality, f, crop, cbox, _ratio(box), whole)
            if whole:
                s.recent = [*s.recent[-SETTLE:], face]
            if window and (s.best is None or (whole, quality) > (s.best.whole, s.best.quality)):
                s.best = face
        if s.best is not None and f - s.since >= due - 1:
            if self._compare(state, s, s.best) is False:
                # a face not whole that matched nobody: what it is, nothing says; the stretch ends (its last whole
                # face compared), and the frames from here on show only from a match after them
                misses = state.misses   # (a match of that older face does not undo this one)
                self._close(state)
                state.misses, state.doubt = misses, True
                return
            s.since = f + 1

    def _compare(self, state: _Followed, s: _Stretch, face: _Face) -> bool | None:
        """Compare one of the stretch's faces (``best`` or ``recent``) with every person: a match counts towards
        showing it (True); a match with another person than before, or a whole face that matches nobody, and the
        track is redacted from then on (None). A face not whole that matches nobody, or looks away, is False and
        redacts nothing: the person's own face so hidden embeds 0.11-0.77 from their photo, other people's faces so
        hidden did not come under 0.43 (docs/quality.md). A whole face looking away: None, not compared."""
        f, whole = face.frame, face.whole
        s.best = None
        points, shape = self.embedder.landmarks(face.crop, face.box)
        dist = None
        if frontal(points):
            e = self.embedder.embed(face.crop, shape)
            self.compared += 1
            dist = [p.distance(e) for p in self.persons]
        if not whole and (dist is None or min(dist) >= THRESHOLD):
            state.misses += 1
            return False   # (the whole faces before it stay: one of them is compared as the stretch ends)
        # (a shown stretch's later faces stay: one is compared when it ends, and its last frames may show)
        s.recent = [r for r in s.recent if s.shown and r.frame > f]
        if dist is None:
            return None
        who = int(np.argmin(dist))
        if dist[who] >= THRESHOLD or state.person not in (None, who):
            state.rejected = True
            state.open = False
            state.stretches.clear()
            return None
        state.person, state.misses, state.doubt = who, 0, False
        if whole:   # (the track's own shape)
            state.matched = [*state.matched[-31:], face.ratio]
        s.matches += 1
        s.last_match = f   # (every face left to compare is after the last match: each match drops those before)
        if s.first_match < 0:
            s.first_match = f
        state.matched_faces += 1
        state.farthest = max(state.farthest, dist[who])
        return True

    def mark(self, final: list[Regions], start: int) -> list[Regions]:
        """The final frames (from frame index ``start``) with the faces to leave visible marked ``kept``."""
        out = []
        for i, d in enumerate(final):
            g = start + i
            if not len(d) or not self.tracks:
                out.append(d)
                continue
            kept = np.array([self._shows(int(t), g) for t in d.track], bool)
            out.append(dataclasses.replace(d, kept=kept) if kept.any() else d)
        if final:
            self._forget(start + len(final))
        return out

    def _shows(self, track: int, g: int) -> bool:
        state = self.tracks.get(track)
        if state is None or state.rejected:
            return False
        if any(s.shown and (s.first_match if s.doubt else s.start) <= g <= s.last_match for s in state.stretches):
            state.kept_frames += 1
            return True
        return False

    def _forget(self, upto: int) -> None:
        """Stretches whose frames are all out (``upto``: the next frame to become final), and the tracks gone
        since before it, except those kept (the summary)."""
        for track in list(self.tracks):
            state = self.tracks[track]
            state.stretches = [s for s in state.stretches
                               if s.end >= upto or (state.open and s is state.stretches[-1])]
            if track not in self.alive and state.seen < upto and not state.kept_frames:
                del self.tracks[track]

    def summary(self) -> list[dict]:
        """The tracks kept visible: which person, the distances that matched (the largest), frames shown."""
        return [{"track": t, "person": self.persons[s.person].name, "distance": round(s.farthest, 3),
                 "compared": s.matched_faces, "frames": s.kept_frames}
                for t, s in sorted(self.tracks.items()) if s.kept_frames]


def face_crop(frame, box: np.ndarray, rotation: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The face in ``box`` and its surroundings (twice its size), as a viewer sees it (``rotation``), 8-bit RGB on
    the host, the face at most 200 px wide; and the face box in it."""
    xp = array_module(frame)
    x1, y1, x2, y2 = (float(v) for v in box)
    side = max(x2 - x1, y2 - y1) * 2
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    height, width = frame.shape[:2]
    a, b = max(0, int(cx - side / 2)), max(0, int(cy - side / 2))
    c, d = min(width, int(cx + side / 2) + 1), min(height, int(cy + side / 2) + 1)
    crop = frame[b:d, a:c]
    crop = crop.get() if xp is not np else np.asarray(crop)
    if crop.dtype == np.uint16:
        crop = (crop >> 8).astype(np.uint8)
    cbox = np.array([x1 - a, y1 - b, x2 - a, y2 - b], np.float32)
    k = (rotation // 90) % 4
    if k:  # np.rot90 by k (counter-clockwise), the box turned with it
        hh, ww = crop.shape[:2]
        crop = np.rot90(crop, k)
        pts = np.array([[cbox[0], cbox[1]], [cbox[2], cbox[3]]])
        turned = {1: lambda p: np.stack([p[:, 1], ww - p[:, 0]], 1),
                  2: lambda p: np.stack([ww - p[:, 0], hh - p[:, 1]], 1),
                  3: lambda p: np.stack([hh - p[:, 1], p[:, 0]], 1)}[k](pts)
        cbox = np.concatenate([turned.min(0), turned.max(0)]).astype(np.float32)
    scale = min(1.0, 200.0 / max(float(cbox[2] - cbox[0]), 1.0))
    if scale < 1:
        crop = cv2.resize(crop, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        cbox = cbox * scale
    return np.ascontiguousarray(crop), cbox


def _ratio(box) -> float:
    return float(box[3] - box[1]) / max(float(box[2] - box[0]), 1.0)


def _grown(b: np.ndarray, pad) -> np.ndarray:
    return b + np.stack([-pad, -pad, pad, pad], axis=-1)


def _beside(boxes: np.ndarray) -> np.ndarray:
    """For each face box, whether another one comes within ``NEAR`` of their widths."""
    pad = NEAR * np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
    return _meet(_grown(boxes, pad)).any(axis=1)


def _swept(t, state: _Followed, f: int) -> np.ndarray:
    """Where track ``t``'s face may have been since the last look: found in frame ``f``, its box there and at its
    detection before (``state``), grown by ``PAD`` of its width; not found, anywhere within ``LOST`` of its width
    and the way its motion (``step``) may have taken it since its last detection."""
    box = np.asarray(t.box, np.float32)
    width = float(max(box[2] - box[0], box[3] - box[1]))
    if t.last_hit == f:
        if state.box is not None and state.hit < f:
            box = np.concatenate([np.minimum(box[:2], state.box[:2]), np.maximum(box[2:], state.box[2:])])
        return _grown(box, PAD * width)
    return _grown(box, LOST * width + state.step * (f - t.last_hit))


def _swapped(alive: list, states: list[_Followed], f: int, last: int) -> np.ndarray:
    """For each track, whether the tracker may have given its number to another face at this look (frame ``f``;
    the one before, ``last``): their ``_swept`` areas meet, and they are not both found at both looks with each
    box ``APART`` times nearer (coordinate by coordinate) its own box at the last look than the other's. A face
    found at both looks beside one not found now is at risk only where the other's area holds its box (less the
    detector's jitter), or where its box is not ``APART`` times nearer its own box at the last look than the other
    face's last box: elsewhere the other face, wherever it went, could not be where this box is, at this size."""
    areas = np.stack([_swept(t, state, f) for t, state in zip(alive, states)])
    meet = _meet(areas)
    risky = np.zeros(len(alive), bool)
    for i, j in zip(*np.nonzero(np.triu(meet))):
        pair = [(alive[k], states[k]) for k in (i, j)]
        both = [t.last_hit == f and state.box is not None and state.hit == last for t, state in pair]
        if all(both):
            risky[[i, j]] = not all(_stays(t, state, other.box) for (t, state), (_, other) in (pair, pair[::-1]))
            continue
        k = both.index(True) if any(both) else None
        if k is None or pair[1 - k][0].last_hit == f:  # one found at this look only (new, or back): either's face
            risky[[i, j]] = True
            continue
        (t, state), (lost, other) = pair[k], pair[1 - k]
        box = np.asarray(t.box, np.float32)
        inner, area = _grown(box, -PAD * float(box[2] - box[0])), areas[(i, j)[1 - k]]
        held = np.all(inner[:2] >= area[:2]) and np.all(inner[2:] <= area[2:])
        last_seen = other.box if other.box is not None else np.asarray(lost.box, np.float32)
        risky[[i, j]] = held or not _stays(t, state, last_seen)
    return risky


def _stays(t, state: _Followed, other: np.ndarray) -> bool:
    """Whether track ``t``'s box at this look is ``APART`` times nearer (coordinate by coordinate) its own box at the
    last look (``state``) than ``other``, another face's box then."""
    box = np.asarray(t.box, np.float32)
    own = max(float(np.abs(box - state.box).max()), PAD * float(box[2] - box[0]))
    return float(np.abs(box - other).max()) > APART * own


def _meet(g: np.ndarray) -> np.ndarray:
    """Which boxes meet which (a square matrix, False on the diagonal)."""
    meet = (np.minimum(g[:, None, 2], g[None, :, 2]) > np.maximum(g[:, None, 0], g[None, :, 0])) & \
           (np.minimum(g[:, None, 3], g[None, :, 3]) > np.maximum(g[:, None, 1], g[None, :, 1]))
    np.fill_diagonal(meet, False)
    return meet
