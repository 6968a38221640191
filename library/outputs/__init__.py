"""What a run writes and keeps: atomic file writes, checkpoints and their resume, the best
checkpoint, the SavedModel export, the folder lock, provenance."""
