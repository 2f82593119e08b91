"""trt_anon.facenet: dlib's face recognition network converted to ONNX gives dlib's own embeddings, on real faces
(scikit-image's photos), and a file that is not that network is refused with a clear error."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import cv2
import numpy as np
import pytest

pytestmark = pytest.mark.consent
dlib = pytest.importorskip("dlib")
onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
data = pytest.importorskip("skimage.data")

from trt_anon import facenet  # noqa: E402
from trt_anon.errors import ConfigError  # noqa: E402

# max-abs difference from dlib, per number of an embedding and per distance: seen 4e-7 (float rounding); dividing
# by 255 instead of 256 is 2e-4 off, and the distance threshold is 0.34
TOLERANCE = 1e-5


@pytest.fixture(scope="module")
def models() -> Path:
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("face_recognition_models is not installed")
    return Path(list(spec.submodule_search_locations)[0]) / "models"


@pytest.fixture(scope="module")
def dat(models) -> Path:
    return models / "dlib_face_recognition_resnet_model_v1.dat"


@pytest.fixture(scope="module")
def faces(models) -> list[tuple[str, np.ndarray, object, np.ndarray]]:
    """(name, image, dlib's 5-point shape or None, 150 x 150 chip): faces found by dlib in the astronaut photo and
    variants of it (smaller, mirrored, darker, blurred) and the cameraman, and LFW faces scaled up to chips."""
    detector = dlib.get_frontal_face_detector()
    predictor = dlib.shape_predictor(str(models / "shape_predictor_5_face_landmarks.dat"))
    astronaut = data.astronaut()
    photos = {
        "astronaut": astronaut,
        "smaller": cv2.resize(astronaut, (300, 300), interpolation=cv2.INTER_AREA),
        "mirrored": np.ascontiguousarray(astronaut[:, ::-1]),
        "darker": (astronaut * 0.6).astype(np.uint8),
        "blurred": cv2.GaussianBlur(astronaut, (0, 0), 1.2),
        "cameraman": np.repeat(data.camera()[..., None], 3, axis=2),
    }
    found = []
    for name, image in photos.items():
        boxes, scores, _ = detector.run(image, 1, -0.5)
        box = boxes[int(np.argmax(scores))]
        shape = predictor(image, box)
        found.append((name, image, shape, dlib.get_face_chip(image, shape, size=facenet.SIZE, padding=0.25)))
    for i in range(4):      # lfw_subset: 100 faces then 100 non-faces, 25 x 25 grey in [0, 1]
        grey = cv2.resize(data.lfw_subset()[i], (facenet.SIZE, facenet.SIZE), interpolation=cv2.INTER_CUBIC)
        chip = np.repeat(np.clip(grey * 255 + 0.5, 0, 255).astype(np.uint8)[..., None], 3, axis=2)
        found.append((f"lfw{i}", chip, None, chip))
    return found


@pytest.fixture(scope="module")
def dlib_net(dat):
    return dlib.face_recognition_model_v1(str(dat))


@pytest.fixture(scope="module")
def net(dat) -> facenet.Network:
    return facenet.Network(dat)


def distances(e: np.ndarray) -> np.ndarray:
    return np.linalg.norm(e[:, None] - e[None], axis=2)


def test_matches_dlib(faces, dlib_net, net):
    """Each chip embeds as dlib embeds it (from the photo and its shape, as --keep-face calls dlib, and from the
    chip), one at a time and all in one batch, and the distances between faces are dlib's."""
    chips = np.stack([chip for *_, chip in faces])
    ours = net(chips)
    assert ours.shape == (len(faces), facenet.DIMENSIONS) and ours.dtype == np.float32
    theirs = np.array([dlib_net.compute_face_descriptor(chip) for *_, chip in faces])
    for (name, image, shape, chip), mine, dlibs in zip(faces, ours, theirs):
        if shape is not None:
            np.testing.assert_allclose(np.asarray(dlib_net.compute_face_descriptor(image, shape)), dlibs,
                                       rtol=0, atol=TOLERANCE)
        assert np.abs(mine - dlibs).max() < TOLERANCE, (name, np.abs(mine - dlibs).max())
        assert np.abs(net(chip[None])[0] - dlibs).max() < TOLERANCE, name
    d = distances(theirs)
    assert np.abs(distances(ours.astype(np.float64)) - d).max() < TOLERANCE
    # the chips differ enough for the comparison to mean something: the astronaut's five chips are closer to
    # each other than to any other face
    assert d[:5, :5].max() < 0.34 < d[:5, 5:].min()


def test_graph_is_valid(dat):
    model = onnx.load_from_string(facenet.convert(dat))
    onnx.checker.check_model(model, full_check=True)
    assert [i.name for i in model.graph.input] == ["chips"]
    assert [o.name for o in model.graph.output] == ["embeddings"]


def test_rejects_bad_chips(net):
    with pytest.raises(ValueError, match="uint8"):
        net(np.zeros((1, 150, 150, 3), np.float32))
    with pytest.raises(ValueError, match="150"):
        net(np.zeros((150, 150, 3), np.uint8))


@pytest.mark.parametrize("kind, message", [
    ("shape_predictor", "version"), ("truncated", "ends early"), ("trailing", "more data after the network")])
def test_rejects_other_files(models, dat, tmp_path, kind, message):
    path = tmp_path / "model.dat"
    if kind == "shape_predictor":       # another dlib file, of the same package
        path = models / "shape_predictor_5_face_landmarks.dat"
    elif kind == "truncated":
        path.write_bytes(dat.read_bytes()[:5_000_000])
    else:
        path.write_bytes(dat.read_bytes() + b"\x01\x01")
    with pytest.raises(ConfigError, match=f"not dlib's face recognition network.*{message}"):
        facenet.convert(path)
