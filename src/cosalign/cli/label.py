"""`cosalign label --judge NAME INPUT OUTPUT`: risk-label the prompts of any table.

INPUT is CSV, JSONL or parquet with a `prompt` column. OUTPUT gets one row per input row, in
input order: prompt, risk_categories (a list; JSON text in CSV), valid, judge. The judge's
options come from params.yaml's `prompt_labels.judge` section when it names the same backend,
otherwise the backend's defaults (the rules judge then fits on the train split of
data/prompts.parquet in the current directory: run it beside the pipeline's outputs, or set
`train_path` in that section). The label space is `--taxonomy PATH`, else data/taxonomy.json when
present, else the paper's.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from cosalign.core.io import InputError

FORMATS = (".parquet", ".jsonl", ".csv")


def add_arguments(parser) -> None:
    parser.add_argument("--judge", required=True, choices=["rules", "openai", "local"],
                        help="judge backend")
    parser.add_argument("input", metavar="INPUT", help="CSV/JSONL/parquet file with a prompt column")
    parser.add_argument("output", metavar="OUTPUT", help="output file (.parquet, .jsonl or .csv)")
    parser.add_argument("--params", default=None,
                        help="params file whose prompt_labels.judge section configures the judge "
                             "(default params.yaml, used when present)")
    parser.add_argument("--taxonomy", default=None, metavar="PATH",
                        help="taxonomy.json giving the label space (default: data/taxonomy.json "
                             "when present, else the paper's categories)")


def judge_params(name: str, params_path: str, explicit: bool) -> dict:
    """{"name": name, **options} from the params file's prompt_labels.judge section if it matches."""
    path = Path(params_path)
    if not path.exists():
        if explicit:
            raise InputError(path, "params file not found")
        return {"name": name}
    from cosalign.core.params import load_params
    section = (load_params(path).get("prompt_labels") or {}).get("judge") or {}
    if not isinstance(section, dict):
        raise InputError(path, "must be a mapping", field="prompt_labels.judge")
    if section.get("name") != name:
        if section:
            print(f"note: {path} configures judge {section.get('name')!r}; using {name!r} "
                  "defaults", file=sys.stderr)
        return {"name": name}
    return dict(section)


def read_prompts(path: str) -> list[str]:
    """The `prompt` column, failing on a missing column or an empty prompt (row is 1-based)."""
    from cosalign.core.io import read_table
    df = read_table(path)
    if "prompt" not in df.columns:
        raise InputError(path, f"missing column (columns: {list(df.columns)})", field="prompt")
    prompts = []
    for i, p in enumerate(df["prompt"].tolist(), start=1):
        if not isinstance(p, str) or not p.strip():
            raise InputError(path, "empty prompt", row=i, field="prompt")
        prompts.append(p)
    return prompts


def label_table(prompts: list[str], judge, taxonomy=None):
    """DataFrame (prompt, risk_categories, valid, judge), validated against the `labels` schema
    (category names against `taxonomy`, the judge's label space; default: the paper's)."""
    import pandas as pd

    from cosalign.cosa.schemas import validate
    verdicts = judge.label_prompts(prompts)
    df = pd.DataFrame({"prompt": prompts,
                       "risk_categories": [v.risk_categories for v in verdicts],
                       "valid": [bool(v.valid) for v in verdicts],
                       "judge": [judge.judge_id] * len(prompts)})
    return validate(df, "labels", taxonomy=taxonomy)


def write_labels(df, output: str) -> None:
    from cosalign.core.io import write_parquet, write_text
    suffix = Path(output).suffix.lower()
    if suffix == ".parquet":
        write_parquet(df, output)
    elif suffix == ".jsonl":
        write_text("".join(json.dumps(r, ensure_ascii=False) + "\n"
                           for r in df.to_dict("records")), output)
    else:
        out = df.assign(risk_categories=[json.dumps(c, ensure_ascii=False)
                                         for c in df["risk_categories"]])
        write_text(out.to_csv(index=False, lineterminator="\n"), output)


def run(args) -> int:
    from cosalign.cosa import taxonomy
    from cosalign.judges import DryRun, JudgeError, make_judge
    if Path(args.output).suffix.lower() not in FORMATS:
        raise InputError(args.output, f"unsupported output type; use one of {FORMATS}")
    prompts = read_prompts(args.input)  # bad input fails before any model loads
    tax = taxonomy.for_command(args.taxonomy)
    try:
        judge = make_judge(judge_params(args.judge, args.params or "params.yaml",
                                        explicit=args.params is not None), tax)
        df = label_table(prompts, judge, tax)
    except DryRun as exc:
        print(str(exc), file=sys.stderr)
        return 0
    except (JudgeError, ValueError) as exc:
        if isinstance(exc, InputError):
            raise
        print(f"error: {exc}", file=sys.stderr)
        return 2
    write_labels(df, args.output)
    n_invalid = int((~df["valid"]).sum())
    print(f"labelled {len(df)} prompt(s) with {judge.judge_id} -> {args.output}"
          f" ({n_invalid} invalid)", file=sys.stderr)
    return 0
