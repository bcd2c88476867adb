"""Resumable training: checkpoints outside the DVC outs, found again after a kill, removed after success.

DVC deletes a stage's outs before running it, so, as the other resumable stages do
(cosalign.core.workqueue), the Trainer's `checkpoint-<step>` folders live under
`.cache/work/<stage>/<fingerprint>/`. The fingerprint hashes the training params (less the ones that
do not change the maths: save_steps, report_to), the preference file, the parent checkpoint and the
destination, so a change of any of them starts afresh. A checkpoint counts only once its
`trainer_state.json` is written: transformers writes that file last, so a kill during a save leaves
a folder that is skipped.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from cosalign.core.io import file_digest
from cosalign.core.workqueue import WORK_ROOT, fingerprint
from cosalign.training.params import TrainingParams

STATE_FILE = "trainer_state.json"  # transformers.trainer.TRAINER_STATE_NAME
NOT_MATHS = ("save_steps", "report_to")  # system params that leave the trained weights unchanged


def checkpoint_dir(params: TrainingParams, pref_path, parent_dir, out_dir, root: Path = WORK_ROOT) -> Path:
    """`<root>/<stage>/<fingerprint>`: where this run's Trainer checkpoints go (the same on every process)."""
    maths = params.to_dict()
    maths["system"] = {k: v for k, v in maths["system"].items() if k not in NOT_MATHS}
    key = fingerprint(maths, file_digest(pref_path), _digest_dir(parent_dir), str(Path(out_dir).resolve()))
    return Path(root) / params.stage / key


def last_checkpoint(work_dir: Path) -> str | None:
    """The complete checkpoint with the highest step in work_dir, or None."""
    if not Path(work_dir).is_dir():
        return None
    done = [p for p in Path(work_dir).glob(f"{PREFIX_CHECKPOINT_DIR}-*")
            if p.is_dir() and p.name.split("-")[-1].isdigit() and (p / STATE_FILE).exists()]
    return str(max(done, key=lambda p: int(p.name.split("-")[-1]))) if done else None


def checkpoint_kwargs(params: TrainingParams) -> dict:
    """TrainingArguments keywords for periodic checkpoints and the trackers named in report_to."""
    s = params.system
    return dict(save_strategy="steps" if s.save_steps else "no", save_steps=s.save_steps or 500,
                save_only_model=False, report_to=trackers(params, without_dvclive=True))


def trackers(params: TrainingParams, without_dvclive: bool = False) -> list[str]:
    names = [params.system.report_to] if isinstance(params.system.report_to, str) else list(params.system.report_to)
    names = [n for n in names if n != "none"]
    return [n for n in names if n != "dvclive"] if without_dvclive else names


def tracker_callbacks(params: TrainingParams, resumed: bool) -> list:
    """DVCLive's transformers callback, set up for a pipeline stage.

    Left to transformers (report_to="dvclive"), DVCLive would write its plots into the project's
    dvc.yaml and save a DVC experiment from inside `dvc repro`; here it logs to `dvclive/<stage>/`
    (not a DVC out, so a resumed run appends to the same files) and touches nothing else.
    """
    if "dvclive" not in trackers(params):
        return []
    from dvclive import Live
    from transformers.integrations import DVCLiveCallback

    live = Live(dir=f"dvclive/{params.stage}", resume=resumed, dvcyaml=None, save_dvc_exp=False, report=None)
    return [DVCLiveCallback(live=live)]


def clean(work_dir: Path) -> None:
    """After success: remove this run's checkpoints and any left by other runs of the stage."""
    stage_dir = Path(work_dir).parent
    if stage_dir.is_dir():
        shutil.rmtree(stage_dir)


def _digest_dir(path) -> str:
    digest = hashlib.sha256()
    for p in sorted(Path(path).rglob("*")):
        if p.is_file():
            digest.update(str(p.relative_to(path)).encode() + b"\0" + file_digest(p).encode())
    return digest.hexdigest()
