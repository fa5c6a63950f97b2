"""Sample-quality metrics for generated images."""
