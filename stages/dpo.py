"""Stage dpo: DPO on every preference pair, models/sft -> models/dpo (models/sft is also the reference).

Reads params.yaml `dpo` (cosalign.training.params); writes the checkpoint and reports/train/dpo.{csv,png}.
With `dpo.accelerate_config` set, it re-runs itself under `accelerate launch` (configs/accelerate/README.md).
"""

import argparse
import json
import sys

from cosalign.core import paths
from cosalign.core.params import load_params
from cosalign.core.stage import run_stage, stage_params
from cosalign.cosa.taxonomy import Taxonomy
from cosalign.training import TrainingParams, train_dpo
from cosalign.training.launch import is_main_process, relaunch_if_needed


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--preferences", default=paths.PREFERENCES)
    ap.add_argument("--sft", default=paths.SFT_MODEL)
    ap.add_argument("--out", default=paths.DPO_MODEL)
    ap.add_argument("--reports", default=paths.TRAIN_REPORTS)
    ap.add_argument("--params", default="params.yaml")
    args = ap.parse_args(argv)
    compute = load_params(args.params).get("precision", "fp32")  # top-level: auto | bf16 | fp32
    params = stage_params("dpo", TrainingParams, path=args.params, compute=compute)
    code = relaunch_if_needed(params.accelerate_config, __file__, argv, "dpo.accelerate_config")
    if code is not None:
        return code
    summary = train_dpo(args.preferences, args.sft, args.out, args.reports, params,
                        taxonomy=Taxonomy.load(paths.TAXONOMY))
    if is_main_process():
        print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    run_stage(main)
