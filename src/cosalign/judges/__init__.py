"""Judges: label prompts, judge responses, and judge free-form config compliance.

One interface (`base.Judge`), three backends selected by name with `make_judge(params)`:
`rules` (offline, weak, deterministic), `openai` (any OpenAI-compatible endpoint) and `local`
(a transformers causal LM). Backends are imported only when chosen.
"""

from cosalign.judges.base import (CallBudgetExceeded, ConfigVerdict, DryRun, Judge, JudgeError,
                                  PromptVerdict, ResponseVerdict, make_judge)

__all__ = ["CallBudgetExceeded", "ConfigVerdict", "DryRun", "Judge", "JudgeError",
           "PromptVerdict", "ResponseVerdict", "make_judge"]
