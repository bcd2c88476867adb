"""Training curves from the Trainer's log history: a CSV for `dvc plots` and a PNG.

The rows come from `TrainerState.log_history`, which every checkpoint's trainer_state.json carries,
so a run resumed after a kill still writes its whole curve. DVCLive (system.report_to: dvclive)
is not used for these files: DVC deletes a stage's outs before a re-run, so a DVCLive folder among
the outs would hold only the steps after the resume, and it writes one TSV per metric (with
DVCLive's own step count) where these plots want one table per stage (docs/training.md).

CSV columns are plain names (no '/') so dvc plots templates can address them:
sft: step, epoch, loss, learning_rate, grad_norm;
dpo: the same plus reward_accuracy, reward_margin, reward_chosen, reward_rejected.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

from cosalign.core.io import atomic_path, write_text

# TRL log key -> CSV column
COLUMNS = {
    "sft": {"loss": "loss", "learning_rate": "learning_rate", "grad_norm": "grad_norm"},
    "dpo": {"loss": "loss", "learning_rate": "learning_rate", "grad_norm": "grad_norm",
            "rewards/accuracies": "reward_accuracy", "rewards/margins": "reward_margin",
            "rewards/chosen": "reward_chosen", "rewards/rejected": "reward_rejected"},
}
PLOTTED = {"sft": ["loss"], "dpo": ["loss", "reward_accuracy", "reward_margin"]}


def rows_from_history(log_history: list[dict], stage: str) -> list[dict]:
    """One row per logged training step (the final summary entry has no 'loss' and is skipped)."""
    rows = []
    for logs in log_history:
        if "loss" not in logs:
            continue
        row = {"step": int(logs["step"]), "epoch": round(float(logs.get("epoch") or 0), 6)}
        for key, col in COLUMNS[stage].items():
            if key in logs:
                row[col] = float(logs[key])
        rows.append(row)
    return rows


def write_curves(rows: list[dict], stage: str, reports_dir: str | Path) -> dict[str, Path]:
    """Write <reports_dir>/<stage>.csv and .png atomically; returns their paths."""
    reports_dir = Path(reports_dir)
    cols = ["step", "epoch"] + list(COLUMNS[stage].values())
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=cols, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({c: _fmt(row.get(c)) for c in cols})
    csv_path, png_path = reports_dir / f"{stage}.csv", reports_dir / f"{stage}.png"
    write_text(buf.getvalue(), csv_path)
    _plot(rows, stage, png_path)
    return {"csv": csv_path, "png": png_path}


def _fmt(value) -> str:
    if value is None:
        return ""
    return repr(value) if isinstance(value, float) else str(value)


def _plot(rows: list[dict], stage: str, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")  # no display on CI machines
    import matplotlib.pyplot as plt

    names = PLOTTED[stage]
    fig, axes = plt.subplots(1, len(names), figsize=(4.5 * len(names), 3.2), squeeze=False)
    steps = [r["step"] for r in rows]
    for ax, name in zip(axes[0], names):
        ax.plot(steps, [r.get(name, float("nan")) for r in rows], marker=".", linewidth=1)
        ax.set_xlabel("step")
        ax.set_title(f"{stage} {name}")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        # No Software/date metadata, so equal curves give byte-identical files.
        fig.savefig(tmp, format="png", dpi=100, metadata={"Software": None})
    plt.close(fig)
