"""TRL training stages: SFT on the chosen answers, then DPO on all pairs (see trainers.py)."""

from cosalign.training.params import TrainingParams
from cosalign.training.trainers import dpo_dataset, load_preferences, sft_dataset, train_dpo, train_sft

__all__ = ["TrainingParams", "dpo_dataset", "load_preferences", "sft_dataset", "train_dpo", "train_sft"]
