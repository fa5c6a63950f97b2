"""Lightning data modules yielding image tensors (C, H, W) float32 in [-1, 1]."""
