"""DVC plots and experiments on the tiny pipeline: each figure defined once, `report.png=false` runs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from pipeline_run import dvc

REPO = Path(__file__).resolve().parent.parent
FIGURES = {"CoSA-Score per config and model", "Helpful and safe breakdown", "SFT training loss",
           "DPO loss, reward accuracy and margin"}


def test_each_figure_is_defined_once_with_x_y_and_template():
    spec = yaml.safe_load((REPO / "dvc.yaml").read_text())
    assert not [name for name, stage in spec["stages"].items() if "plots" in stage.get("do", stage)]
    defs = {name: d for item in spec["plots"] for name, d in item.items()}
    assert set(defs) == FIGURES
    for name, d in defs.items():
        assert {"x", "y", "template"} <= set(d), name
        files = list(d["y"])
        assert all(f.endswith(".csv") for f in files), name
    templates = {d["template"] for d in defs.values()}
    for t in templates - {"linear", "bar_horizontal"}:  # custom templates ship with the repo
        assert (REPO / ".dvc" / "plots" / f"{t}.json").exists(), t
    bars = defs["CoSA-Score per config and model"]
    assert bars["y"] == {"reports/plots/cosa_by_config.csv": "config"}
    layers = json.loads((REPO / ".dvc" / "plots" / f"{bars['template']}.json").read_text())["layer"]
    assert {layers[1]["encoding"]["x"]["field"], layers[1]["encoding"]["x2"]["field"]} == {"lo", "hi"}


@pytest.mark.e2e
def test_dvc_plots_show_lists_each_figure_once(tiny_pipeline):
    shown = json.loads(dvc(tiny_pipeline, "plots", "show", "--json").stdout)
    figures = shown.get("data", shown)  # DVC 3: {"data": {id: [renders]}, "errors": ...}
    assert set(figures) == FIGURES, sorted(figures)
    for name, renders in figures.items():
        assert len(renders) == 1, name
        content = json.dumps(renders[0].get("content") or renders[0])
        assert "<DVC_METRIC" not in content, name  # every anchor was filled: the fields exist
    assert not shown.get("errors"), shown.get("errors")


@pytest.mark.e2e
def test_exp_run_without_pngs(tiny_pipeline, tmp_path):
    root = tmp_path / "repo"
    shutil.copytree(tiny_pipeline, root, symlinks=True)
    dvc(root, "exp", "run", "-S", "report.png=false")
    assert (root / "reports" / "plots" / "cosa_by_config.csv").exists()
    assert not list((root / "reports" / "plots").glob("*.png"))
    # the table is cut to the terminal's width; CSV names every column
    header = dvc(root, "exp", "show", "--only-changed", "--csv").stdout.splitlines()[0]
    assert "report.png" in header.split(","), header
