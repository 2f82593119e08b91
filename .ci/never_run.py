"""Fail when a test that CI's first pass skipped was not run by a later pass (outcome files from conftest.py).

Usage: python .ci/never_run.py FIRST LATER...   Tests that only a CUDA machine runs (tests/gpu) and nvcc's
compile check are expected to stay skipped here."""
from __future__ import annotations

import sys
from pathlib import Path

EXPECTED = ("tests/gpu/", "tests/test_kernels_on_cpu.py::test_kernels_compile_for_hopper")


def outcomes(path: str) -> list[tuple[str, str]]:
    return [tuple(line.split(" ", 1)) for line in Path(path).read_text(encoding="utf-8").splitlines() if line]


def main(first: str, *later: str) -> int:
    skipped = {node for outcome, node in outcomes(first) if outcome == "skipped"}
    passed = {node for path in later for outcome, node in outcomes(path) if outcome == "passed"}
    never = sorted(node for node in skipped if not node.startswith(EXPECTED)
                   and not any(p == node or p.startswith(node + "::") for p in passed))
    for node in never:
        print(f"never run in CI: {node} (skipped by the first pass, not passed by a later one)")
    print(f"{len(skipped)} skipped by the first pass; {len(never)} of them not run by a later pass")
    return 1 if never else 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
