"""prodcat: training."""
