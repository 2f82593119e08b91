"""Clips with real faces (skimage's astronaut) made once per test session; the CI rule that the GPU
rehearsals run rather than skip."""
from __future__ import annotations

import os

import pytest
from synth import Clip, Face, make_clip


@pytest.fixture(scope="session")
def clips(tmp_path_factory) -> dict[str, Clip]:
    """The end-to-end clips, 640x360 30 fps H.264 + AAC unless said otherwise."""
    d = tmp_path_factory.mktemp("clips")
    return {
        # 70 frames: not a multiple of the 32-frame batch
        "moving": make_clip(d / "moving.mp4", frames=70, faces=[Face(80, (40, 80), (4.0, 0.5))]),
        "enter_leave": make_clip(d / "enter_leave.mp4", frames=50, audio=False, faces=[
            Face(70, (-60, 120), (6.0, 0.0), enter=5, leave=40)]),
        "two": make_clip(d / "two.mp4", frames=33, faces=[Face(90, (60, 60), (2.0, 0)),
                                                            Face(60, (420, 150), (-2.0, 1.0), flip=True)]),
        "small": make_clip(d / "small.mp4", 1280, 720, frames=20, audio=False, faces=[
            Face(32, (300, 200), (1.5, 0)), Face(48, (900, 400), (0, 0))]),
    }


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """With TRT_ANON_REQUIRE_REHEARSAL=1 (CI's second pass, .ci/run), a skipped test is a failure:
    the rehearsals of the GPU path must run wherever CI installed DALI and PyTorch for them."""
    outcome = yield
    report = outcome.get_result()
    if report.skipped and os.environ.get("TRT_ANON_REQUIRE_REHEARSAL") == "1" and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = f"skipped, but TRT_ANON_REQUIRE_REHEARSAL=1 requires it to run: {reason}"


def _record(nodeid: str, outcome: str) -> None:
    path = os.environ.get("TRT_ANON_OUTCOMES")
    if path:
        with open(path, "a", encoding="utf-8") as f:
            f.write(f"{outcome} {nodeid}\n")


def pytest_runtest_logreport(report):
    """With TRT_ANON_OUTCOMES=FILE (.ci/run), each test's outcome is added to FILE, so that CI can check that
    every test the first pass skips, a later pass runs (.ci/never_run.py)."""
    if report.when == "call" or report.skipped:
        _record(report.nodeid, report.outcome)


def pytest_collectreport(report):
    if report.skipped:  # a whole module skipped (e.g. Ray not installed)
        _record(report.nodeid, "skipped")
