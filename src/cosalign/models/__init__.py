"""Models: the base checkpoint, generation backends, safe chat rendering and sentence embeddings."""
