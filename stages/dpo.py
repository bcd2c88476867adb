"""Stage dpo: DPO on every preference pair, models/sft -> models/dpo (models/sft is also the reference).

Reads params.yaml `dpo` (cosalign.training.params); writes the checkpoint and reports/train/dpo.{csv,png}.
With `dpo.accelerate_config` set, it re-runs itself under `accelerate launch` (configs/accelerate/README.md).
"""

import argparse
import json
import sys

from cosalign.core.params import load_params, section
from cosalign.training import TrainingParams, train_dpo
from cosalign.training.launch import is_main_process, relaunch_if_needed


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--preferences", default="data/preferences.parquet")
    ap.add_argument("--sft", default="models/sft")
    ap.add_argument("--out", default="models/dpo")
    ap.add_argument("--reports", default="reports/train")
    ap.add_argument("--params", default="params.yaml")
    args = ap.parse_args(argv)
    compute = load_params(args.params).get("precision", "fp32")  # top-level: auto | bf16 | fp32
    params = TrainingParams.from_dict(section("dpo", args.params), "dpo", compute=compute)
    code = relaunch_if_needed(params.accelerate_config, __file__, argv, "dpo.accelerate_config")
    if code is not None:
        return code
    summary = train_dpo(args.preferences, args.sft, args.out, args.reports, params)
    if is_main_process():
        print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
