"""prodcat: schemas."""
