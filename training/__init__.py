"""prodcat: training — category trees, legacy keyword rules, datasets and the evaluation protocol."""
