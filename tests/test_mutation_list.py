"""The planted bugs of scripts/mutation_check.py still fit the code: each edit's text is found exactly once,
and each named test exists. Cheap, so the main suite says at once when a change leaves a mutant behind
(the check itself runs only at the end of CI)."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _mutation_check():
    spec = importlib.util.spec_from_file_location("mutation_check", ROOT / "scripts" / "mutation_check.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


MUTANTS = _mutation_check().MUTANTS


@pytest.mark.parametrize("mutant", MUTANTS, ids=[m.name for m in MUTANTS])
def test_mutant_still_applies(mutant):
    text = (ROOT / mutant.path).read_text(encoding="utf-8")
    for old, new in mutant.edits:
        assert text.count(old) == 1, f"{mutant.path}: the text to mutate is found {text.count(old)} times"
        assert old != new
        text = text.replace(old, new)


@pytest.mark.parametrize("mutant", MUTANTS, ids=[m.name for m in MUTANTS])
def test_mutant_names_tests_that_exist(mutant):
    for node in mutant.tests:
        path, name = node.split("::", 1)
        function = name.split("[", 1)[0]
        source = (ROOT / path).read_text(encoding="utf-8")
        assert f"def {function}(" in source, node
        decorators = source.split(f"def {function}(", 1)[0].rsplit("\n\n", 1)[-1]  # the lines just above it
        if "[" not in name:  # pytest collects a parametrized test only by its ids
            assert "@pytest.mark.parametrize" not in decorators, f"{node}: parametrized; name one of its ids"
