"""Feature-store load step of the training pipeline."""
