"""The artifact registry on the Hugging Face Hub: publish, pull (verified), cards and lineage.

One repo per artifact, `<namespace>/cosalign-<artifact>` (see cosalign.core.paths). The artifact
files travel unchanged; each card records their sha256 in its YAML metadata (`cosalign.files`)
so a pull can verify what it got. Endpoint and token come from the environment exactly as
huggingface_hub reads them (HF_ENDPOINT, HF_TOKEN or the stored `hf auth login`).
"""
