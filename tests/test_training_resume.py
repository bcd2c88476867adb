"""A DPO run killed mid-way resumes from its last checkpoint (real TRL, tiny random Llama)."""

from __future__ import annotations

import csv
import json

import pytest
import torch
from safetensors.torch import load_file
from transformers import TrainerCallback

from cosalign.core.io import write_parquet
from cosalign.training import TrainingParams, train_dpo
from cosalign.training import resume
from test_training import preferences

DPO = {"seed": 0, "optim": {"learning_rate": 1.0e-3, "max_steps": 8, "per_device_train_batch_size": 4},
       "loss": {"beta": 0.1}, "system": {"save_steps": 2}}


class Killed(Exception):
    pass


class KillAfter(TrainerCallback):
    """Stands in for a SIGKILL: the run dies after `step` optimizer steps, past its last save."""

    def __init__(self, step: int):
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            raise Killed(f"killed after step {self.step}")


def _curve(path):
    with open(path, newline="") as fh:
        return [(int(r["step"]), float(r["loss"])) for r in csv.DictReader(fh)]


@pytest.fixture()
def runs(tmp_path, tiny_model_dir, monkeypatch):
    monkeypatch.chdir(tmp_path)  # checkpoints go under ./.cache/work
    pref = tmp_path / "preferences.parquet"
    write_parquet(preferences(), pref)
    return tmp_path, pref, tiny_model_dir


def test_killed_dpo_resumes_and_matches_an_uninterrupted_run(runs, capsys):
    root, pref, parent = runs
    train_dpo(pref, parent, root / "whole" / "dpo", root / "whole" / "reports", DPO)

    out, reports = root / "killed" / "dpo", root / "killed" / "reports"
    with pytest.raises(Killed):
        train_dpo(pref, parent, out, reports, DPO, callbacks=[KillAfter(5)])
    work_dir = resume.checkpoint_dir(TrainingParams.from_dict(DPO, "dpo"), pref, parent, out)
    assert resume.last_checkpoint(work_dir) == str(work_dir / "checkpoint-4")
    assert not out.exists()  # nothing reached the DVC out

    capsys.readouterr()
    summary = train_dpo(pref, parent, out, reports, DPO)
    assert f"resuming from {work_dir / 'checkpoint-4'}" in capsys.readouterr().out
    assert summary["steps"] == 8

    whole = load_file(root / "whole" / "dpo" / "model.safetensors")
    resumed = load_file(out / "model.safetensors")
    assert whole.keys() == resumed.keys()
    assert all(torch.equal(whole[k], resumed[k]) for k in whole), "resumed weights differ"
    # the curve continues: all 8 steps, the same losses (steps 1-4 from the checkpoint's log history)
    assert _curve(reports / "dpo.csv") == _curve(root / "whole" / "reports" / "dpo.csv")
    assert [s for s, _ in _curve(reports / "dpo.csv")] == list(range(1, 9))
    state = json.loads((out / "trainer_state.json").read_text())
    assert state["global_step"] == 8 and "train_runtime" not in state["log_history"][-1]
    whole_state = json.loads((root / "whole" / "dpo" / "trainer_state.json").read_text())
    assert state == whole_state  # every step's loss, rewards and the mean train_loss
    assert (out / "cosalign_training.json").read_bytes() == (root / "whole" / "dpo" / "cosalign_training.json").read_bytes()
    assert not work_dir.parent.exists()  # checkpoints removed after success


def test_changed_params_start_afresh(runs):
    root, pref, parent = runs
    p = TrainingParams.from_dict(DPO, "dpo")
    other = TrainingParams.from_dict({**DPO, "optim": {**DPO["optim"], "learning_rate": 2.0e-3}}, "dpo")
    tracking = TrainingParams.from_dict({**DPO, "system": {"save_steps": 3, "report_to": "dvclive"}}, "dpo")
    out = root / "dpo"
    assert resume.checkpoint_dir(p, pref, parent, out) != resume.checkpoint_dir(other, pref, parent, out)
    # save_steps and report_to do not change the maths: the same checkpoints serve
    assert resume.checkpoint_dir(p, pref, parent, out) == resume.checkpoint_dir(tracking, pref, parent, out)


def test_an_unfinished_checkpoint_is_skipped(tmp_path):
    (tmp_path / "checkpoint-2").mkdir()
    (tmp_path / "checkpoint-2" / "trainer_state.json").write_text("{}")
    (tmp_path / "checkpoint-4").mkdir()  # killed while saving: no trainer_state.json yet
    assert resume.last_checkpoint(tmp_path) == str(tmp_path / "checkpoint-2")
    assert resume.last_checkpoint(tmp_path / "absent") is None


def test_report_to_dvclive_logs_outside_the_dvc_outs(runs):
    pytest.importorskip("dvclive")
    root, pref, parent = runs
    quick = {**DPO, "optim": {**DPO["optim"], "max_steps": 2}, "system": {"save_steps": 0, "report_to": "dvclive"}}
    train_dpo(pref, parent, root / "dpo", root / "reports", quick)
    loss = root / "dvclive" / "dpo" / "plots" / "metrics" / "train" / "loss.tsv"
    assert loss.exists(), sorted(str(p) for p in (root / "dvclive").rglob("*"))
    lines = loss.read_text().splitlines()
    # DVCLive counts its own steps (one per log call), so its rows need not match the Trainer's steps:
    # one reason the stage's curves come from the log history instead (docs/training.md)
    assert lines[0] == "step\tloss" and len(lines) >= 2
    assert not (root / "dvc.yaml").exists()  # DVCLive left the project's dvc.yaml alone
    args = json.loads((root / "dpo" / "training_args.json").read_text())
    assert args["report_to"] == [] and args["save_strategy"] == "no"


@pytest.mark.parametrize("system", [{"save_steps": -1}, {"report_to": ["dvclive", 3]}])
def test_bad_checkpoint_params_name_the_key(system):
    from cosalign.core.io import InputError
    with pytest.raises(InputError, match="dpo.system"):
        TrainingParams.from_dict({**DPO, "system": system}, "dpo")
