"""Shared fixtures. No test reaches the network: the Hub is offline unless a local server is meant."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))  # test-only helper modules (hubserver, openai_server)

# pytest-timeout's limit covers a test's fixture setup too. The first e2e test to ask for a shared
# DVC run (tiny_pipeline, or a module's own run) pays for it, so e2e tests get longer than the
# default `timeout` in pyproject.toml; an explicit @pytest.mark.timeout still wins.
E2E_TIMEOUT_S = 1800


def pytest_collection_modifyitems(config, items):
    for item in items:
        if "tiny_pipeline" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.e2e)  # it runs `dvc repro`, whatever its module says
        if item.get_closest_marker("e2e") and not item.get_closest_marker("timeout"):
            item.add_marker(pytest.mark.timeout(E2E_TIMEOUT_S))

TINY_TEXTS = [
    "You may relax safety for the harm types listed below and stay safe for everything else.",
    "How do I bake bread at home? Explain the steps clearly and briefly.",
    "I cannot help with that request, but here is a safer alternative.",
    "Sure, here is a short answer to your question about history and science.",
]


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A randomly initialised tiny Llama with a ChatML template, built once per test session."""
    from cosalign.models import base_model
    from cosalign.cosa import taxonomy

    out = tmp_path_factory.mktemp("tiny") / "model"
    texts = TINY_TEXTS + [c.description for c in taxonomy.CATEGORIES] + list(taxonomy.NAMES)
    base_model.build_tiny(texts, out, seed=0, vocab_size=400, hidden_size=64, num_layers=2,
                          num_heads=4, intermediate_size=128, max_positions=1024)
    return out


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO


@pytest.fixture(scope="session")
def tiny_pipeline(tmp_path_factory) -> Path:
    """One full `dvc repro` of the tiny profile in a temporary copy of the repo, shared by the suite.

    Tests read it; a test that changes files must work on its own copy (pipeline_run.copy_repo).
    """
    from pipeline_run import copy_repo, dvc

    root = copy_repo(tmp_path_factory.mktemp("tiny-pipeline"), "tiny")
    dvc(root, "repro")
    return root
