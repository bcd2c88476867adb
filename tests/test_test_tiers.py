"""Test tiers (README "Setup and tests"): every test that runs `dvc repro`, itself or through a
fixture, is marked e2e, so `make test-fast` (-m "not slow and not e2e") never runs the pipeline,
and it gets the e2e timeout, since its setup may be the shared tiny run."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from conftest import E2E_TIMEOUT_S

TESTS = Path(__file__).resolve().parent


def runs_repro(func: ast.AST) -> bool:
    """Whether the function calls something with a "repro" argument: dvc(root, "repro"),
    subprocess.run([DVC, "repro", ...]) and the like."""
    for node in ast.walk(func):
        if isinstance(node, ast.Call):
            for arg in node.args:
                parts = arg.elts if isinstance(arg, (ast.List, ast.Tuple)) else [arg]
                if any(isinstance(p, ast.Constant) and p.value == "repro" for p in parts):
                    return True
    return False


def repro_functions(path: Path) -> set[str]:
    """The module-level functions (tests and fixtures) of PATH that run `dvc repro`."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return {f.name for f in tree.body if isinstance(f, ast.FunctionDef) and runs_repro(f)}


def test_the_scan_sees_a_repro_call(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text("def a(root):\n    dvc(root, 'repro', 'x')\n"
                     "def b(root):\n    subprocess.run([DVC, 'repro'], cwd=root)\n"
                     "def c(root):\n    dvc(root, 'status')\n")
    assert repro_functions(probe) == {"a", "b"}
    assert "tiny_pipeline" in repro_functions(TESTS / "conftest.py")


def test_every_selected_test_that_runs_dvc_repro_is_e2e(request):
    """Checks the session's selection: under `make test` every test, under `make test-fast` that
    none of the selected ones runs the pipeline."""
    items = [i for i in request.session.items if isinstance(i, pytest.Function)]
    if {i.module.__name__ for i in items} == {__name__.rsplit(".", 1)[-1]}:
        pytest.skip("needs the whole suite's collection (make test / make test-fast)")
    shared = repro_functions(TESTS / "conftest.py")
    checked = 0
    for item in items:
        own = repro_functions(Path(item.module.__file__))
        needs = (shared | own) & set(item.fixturenames) or {item.originalname} & own
        if not needs:
            continue
        checked += 1
        assert item.get_closest_marker("e2e"), f"{item.nodeid} runs dvc repro ({sorted(needs)}): mark it e2e"
        timeout = item.get_closest_marker("timeout")
        assert timeout and timeout.args[0] >= E2E_TIMEOUT_S, f"{item.nodeid}: timeout {timeout}"
    whole_suite = {p.stem for p in TESTS.glob("test_*.py")} <= {i.module.__name__.rsplit(".", 1)[-1] for i in items}
    if whole_suite and not request.config.getoption("markexpr"):
        assert checked >= 10  # an unfiltered collection of every module holds the tiny-pipeline tests
