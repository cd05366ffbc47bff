"""The shared core at the bottom of every layer: errors, ids, the model store, Kafka client
configuration, metrics and settings (docs/architecture.md)."""
