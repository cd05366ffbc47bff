"""The error tree of prodcat: every error the project raises is a :class:`ProdcatError`.

::

    ProdcatError                       (prodcat.core.errors)
    ├── ConfigError                    a setting is missing or invalid; the message names it
    ├── TransientError                 infrastructure down or slow: retry with back-off, never dead-letter
    ├── ModelStoreError                (prodcat.core.model_store) cards, versions, exports
    │   └── ModelNotFoundError         no usable model version (yet)
    ├── LocalKafkaError                (prodcat.localkafka) the local broker cannot be installed or run
    ├── SerdeError                     (prodcat.schemas.exceptions) Avro schemas and serde
    │   ├── SchemaError, EncodeError, DecodeError ── UnknownSchemaError
    │   └── RegistryError              also a TransientError
    ├── TrainingError                  (prodcat.training.exceptions) datasets, taxonomy, rules, models
    │   ├── TaxonomyError, RuleError, DatasetError, LabelError, EmbedderError
    │   └── DriftReferenceError        (prodcat.training.drift) a drift reference that cannot be used
    ├── ServingError                   (prodcat.serving.exceptions) models, images, vector store, web
    │   ├── ModelInputError, ImageFetchError, VectorStoreError
    │   ├── ModelSignatureError, BackendUnavailableError, VectorStoreUnavailableError  (transient)
    │   └── WebError ── AuthError, ConflictError, InvalidInputError, PublishError
    └── StreamsError                   (prodcat.streams.exceptions) stages, topics, workers, feeds
        ├── NormalizationError         bad input with a dead-letter ``kind``
        └── TopicError, ReplayError, UnknownAgentError, WorkerProcessError, JobTemplateError

Third-party errors are translated at the boundary with ``raise ... from exc``, so callers (the CLI,
a stage's retry loop) need to know only this tree.
"""

from __future__ import annotations

__all__ = ["ConfigError", "ModelNotFoundError", "ModelStoreError", "ProdcatError", "TransientError"]


class ProdcatError(Exception):
    """Base class of every error raised by prodcat."""


class ConfigError(ProdcatError):
    """A setting is missing or invalid; the message names it."""


class TransientError(ProdcatError):
    """Infrastructure that is down or slow (registry, model server, vector store), not bad input.

    Stream stages retry the batch with backoff on these and never dead-letter the input.
    """


class ModelStoreError(ProdcatError):
    """The model store (``<base>/<name>/<version>/`` with model cards) cannot be read or written."""


class ModelNotFoundError(ModelStoreError):
    """No usable model version exists (yet) under the model base directory or on the server."""
