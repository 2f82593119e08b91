"""dlib's face recognition network (the ResNet that ``--keep-face`` compares faces with), run by ONNX Runtime.

dlib runs it at about 100 ms a face on a small CPU (the ``dlib-bin`` wheel has no BLAS); ONNX Runtime runs the same
network with the same weights over ten times faster. There is no ONNX export of it, so ``convert`` reads dlib's own
file (``dlib_face_recognition_resnet_model_v1.dat``, CC0) and writes the graph itself, layer for layer. It reads
only this network: the file is checked against its type, as dlib spells it (``NETWORK``), and anything else is
refused. Its output matches dlib's ``compute_face_descriptor`` to float rounding (tests/test_facenet.py), so the
distance threshold measured on dlib's embeddings holds.

dlib's format (dlib/serialize.h, dlib/dnn/core.h, layers.h, input.h, loss.h, cuda/tensor.h):

- An integer is a control byte (bit 7: negative; low 4 bits: how many bytes follow) and its bytes, little-endian.
  A float is two integers, a mantissa and an exponent (dlib/float_details.h). A string is its length and its
  bytes, a bool the character ``'0'`` or ``'1'``. A tensor is a version (2), its 4 dimensions and its values as
  little-endian float32; an ``alias_tensor`` (a view's shape) has a version (1) and 4 dimensions, no values.
- A layer is written as its wrapper's version, then its whole input network, then its own parameters (the
  ``*_`` class: a version string and its fields), then the wrapper's training state (flags, empty tensors). Tag
  and skip layers write only their version and their input network. So the file holds the wrapper versions
  outermost first, then the input layer, then each layer's parameters innermost first.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from .errors import ConfigError

SIZE = 150          # px: the chips' side (``dlib.get_face_chip(img, shape, size=150, padding=0.25)``)
DIMENSIONS = 128    # the embedding's length


def _ares(n: int) -> list[tuple]:
    """``relu<add_prev1<affine<con<n,3,3,1,1,relu<affine<con<n,3,3,1,1,tag1<...>>>>>>>>``: a residual block."""
    return [("relu",), ("add_prev", 1), ("affine",), ("con", n, 3, 1), ("relu",), ("affine",), ("con", n, 3, 1),
            ("tag", 1)]


def _ares_down(n: int) -> list[tuple]:
    """``relu<add_prev2<avg_pool<2,2,2,2,skip1<tag2<affine<con<n,3,3,1,1,relu<affine<con<n,3,3,2,2,
    tag1<...>>>>>>>>>>>>``: a residual block that halves the size (its shortcut is the input, average pooled, with
    zeros for the channels it lacks)."""
    return [("relu",), ("add_prev", 2), ("avg_pool", 2, 2), ("skip", 1), ("tag", 2), ("affine",), ("con", n, 3, 1),
            ("relu",), ("affine",), ("con", n, 3, 2), ("tag", 1)]


# The network's type (tools/python/src/face_recognition.cpp, ``anet_type``), outermost layer first, under
# ``loss_metric`` and over ``input_rgb_image_sized<150>``: (kind, number of filters / outputs, size, stride).
NETWORK: list[tuple] = [
    ("fc", DIMENSIONS), ("avg_pool", 0, 1),                                 # fc_no_bias<128,avg_pool_everything<
    *_ares_down(256),                                                       # alevel0
    *_ares(256), *_ares(256), *_ares_down(256),                             # alevel1
    *_ares(128), *_ares(128), *_ares_down(128),                             # alevel2
    *_ares(64), *_ares(64), *_ares(64), *_ares_down(64),                    # alevel3
    *_ares(32), *_ares(32), *_ares(32),                                     # alevel4
    ("max_pool", 3, 2), ("relu",), ("affine",), ("con", 32, 7, 2),          # max_pool<3,3,2,2,relu<affine<con<...
]


class _Reader:
    """dlib's serialization format, as far as this network needs it; a file that does not fit raises
    ConfigError."""

    def __init__(self, data: bytes, path) -> None:
        self.data = memoryview(data)
        self.pos = 0
        self.path = path

    def fail(self, what: str):
        raise ConfigError(f"{self.path} is not dlib's face recognition network "
                          f"(dlib_face_recognition_resnet_model_v1.dat): {what} at byte {self.pos}")

    def take(self, n: int) -> memoryview:
        if n < 0 or self.pos + n > len(self.data):
            self.fail("the file ends early")
        self.pos += n
        return self.data[self.pos - n:self.pos]

    def int(self) -> int:
        control = self.take(1)[0]
        size = control & 0x0F
        if not 1 <= size <= 8 or control & 0x70:
            self.fail("a malformed integer")
        value = int.from_bytes(self.take(size), "little")
        return -value if control & 0x80 else value

    def float(self) -> float:
        mantissa, exponent = self.int(), self.int()
        if exponent >= 32000:       # dlib's codes for inf and NaN: no parameter of this network is either
            self.fail("a float that is not finite")
        return math.ldexp(mantissa, exponent)

    def floats(self, n: int) -> list[float]:
        return [self.float() for _ in range(n)]

    def string(self) -> str:
        """A layer's version string (the only strings in the file: all short)."""
        n = self.int()
        if not 0 < n <= 64:
            self.fail(f"a string of {n} characters where a version belongs")
        return bytes(self.take(n)).decode("latin-1")

    def bool(self) -> bool:
        ch = bytes(self.take(1))
        if ch not in (b"0", b"1"):
            self.fail("a malformed bool")
        return ch == b"1"

    def version(self, *accepted) -> str | int:
        """A layer's version (a string, or an integer for the wrappers), one of those dlib reads."""
        value = self.string() if isinstance(accepted[0], str) else self.int()
        if value not in accepted:
            self.fail(f"found version {value!r} where one of {accepted} belongs")
        return value

    def tensor(self) -> np.ndarray:
        self.version(2)
        shape = [self.int() for _ in range(4)]
        if min(shape) < 0:
            self.fail("a negative tensor size")
        return np.frombuffer(self.take(4 * math.prod(shape)), "<f4").reshape(shape)

    def alias(self) -> tuple[int, ...]:
        self.version(1)
        return tuple(self.int() for _ in range(4))

    def expect(self, what: str, found, wanted) -> None:
        if found != wanted:
            self.fail(f"{what} is {found}, not {wanted}")


def _con(r: _Reader, layer: tuple) -> dict:
    """``con_``: filters (num_filters, k, nr, nc) then biases in one flat tensor; dlib's default padding is half
    the filter at stride 1 and none at other strides."""
    version = r.version("con_4", "con_5", "con_6")
    params = r.tensor().ravel()
    _, filters, size, stride = layer
    for what, wanted in (("the number of filters", filters), ("the filter's rows", size),
                         ("the filter's columns", size), ("the vertical stride", stride),
                         ("the horizontal stride", stride), ("the vertical padding", size // 2 if stride == 1 else 0),
                         ("the horizontal padding", size // 2 if stride == 1 else 0)):
        r.expect(f"a con layer's {what}", r.int(), wanted)
    shape, _ = r.alias(), r.alias()                                         # the filters' and biases' shapes
    r.expect("a con layer's filters", (shape[0], *shape[2:]), (filters, size, size))
    r.floats(4)                                                             # learning rate, weight decay multipliers
    bias = r.bool() if version != "con_4" else True
    relu = r.bool() if version == "con_6" else False
    r.expect("a con layer's parameter count", params.size, math.prod(shape) + bias * filters)
    return {"weight": params[:math.prod(shape)].reshape(shape), "bias": params[math.prod(shape):] if bias else None,
            "stride": stride, "pad": size // 2 if stride == 1 else 0, "relu": relu}


def _affine(r: _Reader) -> dict:
    """``affine_``: gamma then beta, per channel, in one flat tensor (the network was trained with batch
    normalisation; dlib saved it folded into this)."""
    version = r.version("affine_", "affine_2")
    params = r.tensor().ravel()
    gamma, beta = r.alias(), r.alias()
    n = math.prod(gamma)
    r.expect("an affine layer's parameter count", params.size, n + math.prod(beta))
    r.expect("an affine layer's mode (0: per channel)", r.int(), 0)
    if version == "affine_2" and r.bool():
        return {}                                                           # disabled: passes its input on
    return {"scale": params[:n], "shift": params[n:]}


def _pool(r: _Reader, layer: tuple) -> dict:
    kind, size, stride = layer
    r.version(f"{kind}_2")
    for what, wanted in (("rows", size), ("columns", size), ("vertical stride", stride),
                         ("horizontal stride", stride), ("vertical padding", 0), ("horizontal padding", 0)):
        r.expect(f"a {kind} layer's {what}", r.int(), wanted)
    return {}


def _fc(r: _Reader, layer: tuple) -> dict:
    """``fc_`` without bias: output = input (flattened) @ weights (num_inputs, num_outputs)."""
    version = r.version("fc_2", "fc_3")
    outputs, inputs = r.int(), r.int()
    r.expect("the fc layer's outputs", outputs, layer[1])
    params = r.tensor().ravel()
    r.alias(), r.alias()                                                    # the weights' and biases' shapes
    r.expect("the fc layer's bias mode (1: none)", r.int(), 1)
    r.floats(4)                                                             # learning rate, weight decay multipliers
    if version == "fc_3":
        r.bool()
    r.expect("the fc layer's parameter count", params.size, inputs * outputs)
    return {"weight": params.reshape(inputs, outputs)}


def _details(r: _Reader, layer: tuple) -> dict:
    kind = layer[0]
    if kind == "con":
        return _con(r, layer)
    if kind == "affine":
        return _affine(r)
    if kind in ("max_pool", "avg_pool"):
        return _pool(r, layer)
    if kind == "fc":
        return _fc(r, layer)
    if kind == "relu":
        return {"disabled": r.version("relu_", "relu_2") == "relu_2" and r.bool()}
    r.version("add_prev_")
    return {}


def _read(data: bytes, path) -> tuple[np.ndarray, list[dict]]:
    """The input layer's channel means and each layer's parameters, innermost first (the order of
    ``reversed(NETWORK)``; tags and skips have none: {})."""
    r = _Reader(data, path)
    r.version(1)                                                            # add_loss_layer
    if r.version("loss_metric_", "loss_metric_2") == "loss_metric_2":
        r.floats(2)                                                         # margin, distance threshold
    wrappers = [r.version(1) if layer[0] in ("tag", "skip") else r.version(1, 2) for layer in NETWORK[:-1]]
    wrappers.append(r.version(2, 3))                                        # the add_layer over the input layer
    r.version("input_rgb_image_sized")
    mean = np.array(r.floats(3), np.float32)                                # red, green, blue
    r.expect("the input's rows", r.int(), SIZE)
    r.expect("the input's columns", r.int(), SIZE)
    params = []
    for i in reversed(range(len(NETWORK))):
        layer = NETWORK[i]
        if layer[0] in ("tag", "skip"):
            params.append({})
            continue
        params.append(_details(r, layer))
        r.bool(), r.bool(), r.bool()                                        # setup called, stale, disabled outputs
        r.tensor(), r.tensor()                                              # gradient, cached output
        if i == len(NETWORK) - 1:
            r.tensor()                                                      # grad_final
            if wrappers[i] == 3:
                r.int()                                                     # sample expansion factor
        elif wrappers[i] == 2:
            r.tensor()                                                      # parameter gradients
    if r.pos != len(r.data):
        r.fail("more data after the network")
    return mean, params


def convert(dat_path) -> bytes:
    """dlib's face recognition network as a serialized ONNX model (opset 17): ``chips``, uint8 (N, 150, 150, 3)
    RGB face chips as ``dlib.get_face_chip`` makes them, to ``embeddings``, float32 (N, 128). Raises ConfigError
    if the file is not that network."""
    try:
        from onnx import TensorProto, helper, numpy_helper
    except ImportError:
        raise ConfigError("converting dlib's face recognition network needs onnx, which is not installed: "
                          "pip install onnx") from None

    mean, params = _read(Path(dat_path).read_bytes(), dat_path)
    nodes, weights = [], []

    def const(name: str, value) -> str:
        weights.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def node(op: str, inputs: list[str], **attributes) -> str:
        name = f"{op.lower()}{len(nodes)}"
        nodes.append(helper.make_node(op, inputs, [name], name=name, **attributes))
        return name

    def pad(x: str, shape: tuple, out: tuple) -> str:
        """``x`` (channels, rows, columns: ``shape``) with zeros after its last channel, row and column to
        ``out``."""
        if shape == out:
            return x
        pads = np.array([0, 0, 0, 0, 0, *(o - n for o, n in zip(out, shape))], np.int64)
        return node("Pad", [x, const(f"pads{len(nodes)}", pads)])

    # input_rgb_image_sized: (value - channel mean) / 256, planar
    x = node("Cast", ["chips"], to=TensorProto.FLOAT)
    x = node("Div", [node("Sub", [x, const("mean", mean)]), const("256", np.float32(256))])
    x = node("Transpose", [x], perm=[0, 3, 1, 2])
    shape = (3, SIZE, SIZE)                                                 # channels, rows, columns
    tags: dict[int, tuple[str, tuple]] = {}
    for layer, p in zip(reversed(NETWORK), params):
        kind = layer[0]
        if kind == "con":
            k, _, size, _ = p["weight"].shape
            if p["weight"].shape[1] != shape[0]:
                raise ConfigError(f"{dat_path}: a con layer takes {p['weight'].shape[1]} channels, not {shape[0]}")
            inputs = [x, const(f"w{len(nodes)}", p["weight"])]
            if p["bias"] is not None:
                inputs.append(const(f"b{len(nodes)}", p["bias"]))
            s, padding = p["stride"], p["pad"]
            x = node("Conv", inputs, kernel_shape=[size, size], strides=[s, s], pads=[padding] * 4)
            shape = (k, *(1 + (n + 2 * padding - size) // s for n in shape[1:]))
            if p["relu"]:
                x = node("Relu", [x])
        elif kind == "affine" and p:
            x = node("Mul", [x, const(f"g{len(nodes)}", p["scale"].reshape(-1, 1, 1))])
            x = node("Add", [x, const(f"b{len(nodes)}", p["shift"].reshape(-1, 1, 1))])
        elif kind == "relu" and not p["disabled"]:
            x = node("Relu", [x])
        elif kind in ("max_pool", "avg_pool") and layer[1]:
            _, size, s = layer
            x = node("MaxPool" if kind == "max_pool" else "AveragePool", [x], kernel_shape=[size, size],
                     strides=[s, s])
            shape = (shape[0], *(1 + (n - size) // s for n in shape[1:]))
        elif kind == "avg_pool":                                            # avg_pool_everything
            x = node("GlobalAveragePool", [x])
            shape = (shape[0], 1, 1)
        elif kind == "tag":
            tags[layer[1]] = x, shape
        elif kind == "skip":
            x, shape = tags[layer[1]]
        elif kind == "add_prev":
            # dlib adds tensors of different sizes as if the smaller one had zeros after its last channel, row
            # and column (tt::add): here the shortcut's missing channels, and at 256 channels a 3x3 block
            # output beside its 4x4 shortcut.
            y, other = tags[layer[1]]
            out = tuple(max(a, b) for a, b in zip(shape, other))
            x, shape = node("Add", [pad(x, shape, out), pad(y, other, out)]), out
        elif kind == "fc":
            if p["weight"].shape[0] != math.prod(shape):
                raise ConfigError(f"{dat_path}: the fc layer takes {p['weight'].shape[0]} inputs, not {shape}")
            x = node("MatMul", [node("Flatten", [x], axis=1), const("fc", p["weight"])])
    nodes[-1].output[0] = "embeddings"
    graph = helper.make_graph(
        nodes, "dlib_face_recognition_resnet_model_v1",
        [helper.make_tensor_value_info("chips", TensorProto.UINT8, ["N", SIZE, SIZE, 3])],
        [helper.make_tensor_value_info("embeddings", TensorProto.FLOAT, ["N", DIMENSIONS])], weights)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="trt_anon.facenet")
    model.ir_version = 8                                                    # opset 17's: onnxruntime >= 1.13
    return model.SerializeToString()


class Network:
    """The network in ONNX Runtime: face chips to embeddings, as ``dlib.face_recognition_model_v1``'s
    ``compute_face_descriptor`` computes them. Converting the file takes about a tenth of a second (0.7 s more
    to import onnx), so it is converted on every start rather than cached."""

    def __init__(self, dat_path) -> None:
        import onnxruntime as ort

        self.session = ort.InferenceSession(convert(dat_path), providers=["CPUExecutionProvider"])

    def __call__(self, chips: np.ndarray) -> np.ndarray:
        """``chips``: uint8 (N, 150, 150, 3) RGB, as ``dlib.get_face_chip(img, shape, size=150, padding=0.25)``
        makes each; returns float32 (N, 128)."""
        if chips.dtype != np.uint8 or chips.ndim != 4 or chips.shape[1:] != (SIZE, SIZE, 3):
            raise ValueError(f"face chips must be uint8 (N, {SIZE}, {SIZE}, 3), not {chips.dtype} {chips.shape}")
        return self.session.run(["embeddings"], {"chips": np.ascontiguousarray(chips)})[0]
