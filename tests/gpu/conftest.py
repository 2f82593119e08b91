"""tests/gpu: run only where CUDA works (cupy + a GPU); skipped, with the reason, elsewhere."""
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/helpers.py

from trt_anon import cuda


def pytest_collection_modifyitems(config, items):
    if cuda.available():
        return
    skip = pytest.mark.skip(reason="no CUDA GPU usable by CuPy here (tests/gpu runs on GPU machines)")
    for item in items:
        if "tests/gpu" in str(item.fspath):
            item.add_marker(skip)
