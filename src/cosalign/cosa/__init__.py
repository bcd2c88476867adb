"""The CoSA method itself: the risk taxonomy, config text, the error score, CoSA-Score and the
dataset contracts (CoSA paper, arXiv 2410.08968)."""
