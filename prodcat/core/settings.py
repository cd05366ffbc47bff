"""Typed settings for every prodcat component, loaded once at the entry point.

Environment variables use the prefix ``PRODCAT_`` and ``__`` for nesting, e.g.
``PRODCAT_KAFKA__BOOTSTRAP_SERVERS=broker:9092`` or ``PRODCAT_TOPICS__RAW=feeds.raw``.
Library code receives the section it needs; it never reads ``os.environ``.

Local state (broker data, models, the vector store, job work) goes under ``PRODCAT_HOME``, the
working directory by default: every relative path of the settings is resolved against it when the
settings are built, so nothing defaults to a place inside the installed package.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from prodcat.core.errors import ConfigError
from prodcat.core.image_header import DEFAULT_MAX_PIXELS

#: Files shipped inside the package (read-only): training configs, rules, schemas.
PACKAGE_ROOT = Path(__file__).resolve().parent.parent


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class KafkaSettings(_Section):
    """How to reach the Kafka cluster."""

    bootstrap_servers: str = "127.0.0.1:9092"
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: str | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    ssl_cafile: Path | None = Field(
        default=None,
        description="PEM bundle of the CAs that sign the brokers' certificates (SSL, SASL_SSL); "
        "default: the system's trust store.",
    )
    replication_factor: int | None = Field(
        default=None,
        ge=1,
        description="Replicas of the topics prodcat creates, and the least it accepts on existing "
        "ones; default: 3, or one per broker on a smaller cluster.",
    )
    min_insync_replicas: int | None = Field(
        default=None,
        ge=1,
        description="min.insync.replicas of the topics prodcat creates, and the least it accepts "
        "on existing ones; default: 2 where topics get 3 replicas or more, else the broker's.",
    )

    @field_validator("ssl_cafile")
    @classmethod
    def _readable_cafile(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_file():
            raise ValueError(f"CA bundle {value} is not a readable file")
        return value

    @field_validator("bootstrap_servers")
    @classmethod
    def _host_port(cls, value: str) -> str:
        for server in value.split(","):
            host, sep, port = server.strip().rpartition(":")
            if not sep or not host or not port.isdigit():
                raise ValueError(f"expected host:port[,host:port], got {value!r}")
        return value

    @property
    def faust_broker(self) -> str:
        return ";".join(f"kafka://{s.strip()}" for s in self.bootstrap_servers.split(","))


class TopicNames(_Section):
    """Topic names (docs/architecture.md, "Topics"); override to run several pipelines on one cluster."""

    raw: str = "products.raw"
    normalized: str = "products.normalized"
    deadletter: str = "products.deadletter"
    predictions: str = "products.predictions"
    labels: str = "labels"
    annotation_requests: str = "annotation.requests"
    model_events: str = "models.events"
    judgements: str = "similarity.judgements"
    profiles: str = "feeds.profiles"
    taxonomy: str = "taxonomy"
    replays: str = "products.deadletter.replays"
    mappings: str = "feeds.mappings"
    taxonomy_events: str = "taxonomy.events"
    suspects: str = "labels.suspect"
    second_opinions: str = "labels.second"
    revoked_sessions: str = "ui.sessions.revoked"
    partitions: int = Field(
        default=4, ge=1, description="Partitions for topics the project creates."
    )


class SerdeSettings(_Section):
    """Avro framing: Confluent Schema Registry when a URL is set, single-object encoding otherwise."""

    registry_url: str | None = None


class WorkerSettings(_Section):
    """One Faust worker process."""

    app_id: str = "prodcat"
    batch_size: int = Field(default=2000, ge=1, description="Events per micro-batch.")
    guarantee: Literal["at_least_once", "exactly_once"] = Field(
        default="at_least_once",
        description="exactly_once: each input partition's outputs and offsets in one Kafka "
        "transaction, consumers read committed records (streams/transactions.py).",
    )
    batch_within_s: float = Field(
        default=0.05, gt=0, description="Flush a partial batch after this."
    )
    metrics_host: str = "127.0.0.1"
    metrics_port: int = Field(default=9464, ge=0, le=65535, description="0 disables the endpoint.")
    session_timeout_s: float = Field(default=30.0, ge=6.0)
    heartbeat_interval_s: float = Field(default=3.0, gt=0)
    commit_interval_s: float = Field(default=1.0, gt=0)
    log_level: str = "INFO"
    state_dir: Path = Field(
        default=Path("var/faust"),
        description="Faust's data directory (one folder per app id); must be writable.",
    )


class ServingSettings(_Section):
    """Model serving: the classifier and the image embedder, in process or behind TF Serving."""

    backend: Literal["inprocess", "tfserving"] = Field(
        default="inprocess",
        description="inprocess: load the SavedModel here; tfserving: gRPC PredictionService.",
    )
    model_base: Path = Field(
        default=Path("models"), description="TF Serving layout: <base>/<name>/<version>/."
    )
    classifier: str = Field(default="classifier", description="Model name of the classifier.")
    embedder: str = Field(default="image_embedder", description="Model name of the embedder.")
    version: int | None = Field(default=None, ge=1, description="Pin a version (default: latest).")
    version_label: str | None = Field(
        default=None, description="TF Serving version label (e.g. stable); tfserving only."
    )
    signature: str = "serving_default"
    target: str = Field(default="127.0.0.1:8500", description="TF Serving gRPC host:port.")
    deadline_s: float = Field(default=10.0, gt=0, description="Deadline of one gRPC call.")
    retries: int = Field(default=3, ge=0, description="Retries of a failed call, with backoff.")
    poll_interval_s: float = Field(
        default=2.0, gt=0, description="How often the in-process backend looks for new versions."
    )
    top_k: int = Field(default=5, ge=1, description="Exclusive categories per prediction.")
    committee_size: int = Field(
        default=0,
        ge=0,
        description="Query by committee: also score each product with the newest N loaded "
        "versions (0 or 1: off) and put vote entropy and KL to the consensus in the prediction.",
    )
    rule_threshold: float = Field(
        default=0.5, gt=0, lt=1, description="Rule-based probability counted as a positive."
    )
    batch_size: int = Field(default=512, ge=1, description="Products per model call.")
    batch_within_s: float = Field(default=0.05, gt=0, description="Flush a partial batch after.")
    mapping_prior: bool = Field(
        default=False,
        description="Condition the exclusive probabilities of a product whose feed path has an "
        "approved feed-category mapping on the mapped node's subtree (the model then chooses "
        "within it); the mapping-agreement metric still reads the model's own top class.",
    )


class ImageSettings(_Section):
    """Fetching product images: a security boundary (docs/architecture.md, "Images")."""

    allowed_hosts: tuple[str, ...] = Field(
        default=(),
        description="Hosts, IPs or CIDRs exempt from the private/loopback/link-local guard.",
    )
    file_roots: tuple[Path, ...] = Field(
        default=(), description="Directories file:// URLs may read; empty refuses file://."
    )
    max_bytes: int = Field(default=5 * 1024 * 1024, ge=1024, description="Largest image accepted.")
    timeout_s: float = Field(default=5.0, gt=0, description="Total time for one try of an image.")
    retries: int = Field(
        default=2,
        ge=0,
        description="Further tries after a transient failure (timeout, connection error, HTTP "
        "429 or 5xx) before the image is dead-lettered.",
    )
    retry_backoff_s: float = Field(
        default=0.5, ge=0, description="Wait before the first retry; doubled for each further one."
    )
    max_retry_wait_s: float = Field(
        default=10.0,
        ge=0,
        description="Longest wait between tries, a server's Retry-After included.",
    )
    max_redirects: int = Field(default=3, ge=0)
    concurrency: int = Field(default=16, ge=1, description="Images fetched at once per worker.")
    max_pixels: int = Field(
        default=DEFAULT_MAX_PIXELS,
        ge=1,
        description="Largest width * height accepted, read from the image header before any "
        "decoding (decompression bombs: a 16000x16000 PNG is a few KB).",
    )


class MilvusSettings(_Section):
    """The vector store: milvus-lite (a local path) by default, a Milvus server by http(s) URI."""

    uri: str = Field(
        default="var/milvus/prodcat.db",
        description="Local *.db path (milvus-lite, one process at a time) or http(s)://host:19530 "
        "(a Milvus server, or `milvus-lite server` to share a local directory).",
    )
    token: SecretStr | None = None
    collection: str = "product_images"
    dim: int = Field(default=1280, ge=1)
    index: Literal["auto", "HNSW", "IVF_FLAT", "FLAT"] = Field(
        default="auto",
        description="Vector index; auto: IVF_FLAT on milvus-lite (exact restricted searches, "
        "chosen per query), HNSW on a Milvus server.",
    )
    exact_max_rows: int = Field(
        default=50_000,
        ge=0,
        description="Restricted searches matching at most this many rows (estimated from a "
        "sample) are answered exactly; broader ones by ANN.",
    )
    text_collection: str = Field(
        default="product_texts",
        description="The collection of title vectors (same fields as the image collection).",
    )
    text_dim: int = Field(default=256, ge=8, description="Dimensions of a title vector.")


class SimilaritySettings(_Section):
    """Similar products: by image, by title, or both fused (the API and the web UI)."""

    mode: Literal["image", "text", "hybrid"] = Field(
        default="hybrid",
        description="What a search compares when a request names no mode: image vectors, title "
        "vectors, or both fused.",
    )
    text_weight: float = Field(
        default=0.5,
        ge=0.0,
        le=1.0,
        description="Hybrid score = text_weight x title cosine + (1 - text_weight) x image "
        "cosine; `prodcat similarity weights` suggests one from people's judgements.",
    )
    fusion: Literal["weighted", "rrf"] = Field(
        default="weighted",
        description="weighted: the scores above; rrf: reciprocal-rank fusion of the two lists.",
    )
    candidates: int = Field(
        default=50,
        ge=10,
        le=1000,
        description="Neighbours each side contributes before fusing (at least 4 x k).",
    )
    text_vectors: bool = Field(
        default=True, description="The embed stage also stores a title vector of every product."
    )
    kind_weight: float = Field(
        default=0.3,
        ge=0.0,
        le=2.0,
        description="Same-kind term: a candidate whose top-1 predicted category is the query "
        "product's gains kind_weight x sqrt(p_query x p_candidate) (the two top-1 "
        "probabilities); 0 turns it off. The API and the web UI follow products.predictions "
        "for the kinds.",
    )


class ApiSettings(_Section):
    """The HTTP API (similarity search)."""

    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    max_upload_bytes: int = Field(default=5 * 1024 * 1024, ge=1024)
    key: SecretStr | None = Field(
        default=None,
        description="API key (`X-API-Key` or `Authorization: Bearer`); unset: the API is open "
        "and must sit behind the UI's login or an authenticating ingress.",
    )
    rate_per_s: float = Field(default=20.0, gt=0, description="Requests per second per client.")
    rate_burst: int = Field(default=40, ge=1, description="Requests a client may burst.")


class UiSettings(_Section):
    """The web UI (`prodcat ui`): annotation queue, similarity evaluation, their reports."""

    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    users_file: Path = Field(
        default=Path("var/ui/users.json"),
        description="Annotator accounts (salted PBKDF2 hashes); `prodcat ui user add NAME`.",
    )
    state_dir: Path = Field(
        default=Path("var/ui"),
        description="The generated session secret (when `secret` is unset) and the local view "
        "of the topics (SQLite, rebuilt from Kafka at every start).",
    )
    secret: SecretStr | None = Field(
        default=None,
        description="Key that signs session cookies; unset: generated once into state_dir. "
        "Several replicas behind one URL must share it.",
    )
    session_ttl_s: float = Field(default=12 * 3600.0, gt=0, description="A login lasts this long.")
    cookie_secure: bool = Field(
        default=False, description="Mark cookies Secure (set it when served over HTTPS)."
    )
    lease_ttl_s: float = Field(
        default=300.0,
        gt=0,
        description="A product handed to an annotator is theirs alone for this long.",
    )
    skip_ttl_s: float = Field(
        default=3600.0,
        gt=0,
        description="A product an annotator skipped is not shown to them again for this long.",
    )
    undo_depth: int = Field(
        default=20, ge=1, description="Labels an annotator can undo, newest first."
    )
    page_size: int = Field(
        default=20, ge=1, le=200, description="Rows in search results and lists."
    )
    neighbours: int = Field(default=12, ge=1, le=100, description="Neighbours shown per query.")
    mapping_rows: int = Field(
        default=500, ge=10, le=10_000, description="Rows the Mappings screen shows at most."
    )
    max_upload_bytes: int = Field(default=5 * 1024 * 1024, ge=1024, description="Largest upload.")
    keep_view: bool = Field(
        default=True,
        description="Keep the local view of the topics in `state_dir` between starts, with the "
        "offsets it read, and catch up from there (false: rebuild it from the beginning at "
        "every start).",
    )
    view_max_age_s: float = Field(
        default=20 * 3600,
        gt=0,
        description="A kept view older than this is rebuilt (compacted topics drop tombstones "
        "after delete.retention.ms, one day by default).",
    )
    double_label_share: float = Field(
        default=0.05,
        ge=0,
        le=1,
        description="Share of the products people label that a second annotator labels again, "
        "blind (chosen by product id); agreement (kappa) on the progress page, disagreements "
        "held for adjudication in the Review queue. 0: none.",
    )
    taxonomy_editors: tuple[str, ...] = Field(
        default=(),
        description="Annotators who may rename, move, merge and split taxonomy nodes on the "
        "Taxonomy page (a JSON list); empty: nobody, the page only shows the tree and changes.",
    )
    login_attempts_per_minute: int = Field(
        default=10, ge=1, description="Failed logins allowed per user name and minute."
    )


class BackfillSettings(_Section):
    """``prodcat backfill``: re-scoring products already on ``products.normalized``."""

    rate: float = Field(
        default=500.0,
        ge=0,
        description="Products scored per second at most (0: as fast as the model goes), so the "
        "live classify stage keeps its share of the model server and the broker.",
    )
    batch_size: int = Field(default=256, ge=1, description="Products per model call and commit.")
    after_promotion: bool = Field(
        default=False,
        description="The retrain trigger starts a backfill of every product after it promotes "
        "a model.",
    )


class RetrainSettings(_Section):
    """The retrain trigger agent, the training job it launches and the promotion gate.

    The candidate's exclusive classes are the category ids of the labels themselves (whatever
    level a labeller chose), so there is no tree-level setting here.
    """

    min_new_labels: int = Field(
        default=500, ge=1, description="Start a training job after this many new valid labels."
    )
    max_wait_s: float = Field(
        default=1800.0, gt=0, description="...or after this long with at least one new label."
    )
    check_interval_s: float = Field(default=5.0, gt=0, description="How often the trigger checks.")
    config: Path = Field(
        default=PACKAGE_ROOT / "training" / "configs" / "cnn.yaml",
        description="Training config (YAML) of the retraining job.",
    )
    alternatives: list[Path] = Field(
        default_factory=list,
        description="Other training configs the job trains beside `config` (JSON list, e.g. "
        "'[\"training/configs/linear.yaml\"]'); the candidate is the one with the best holdout "
        "accuracy (few labels favour a linear model, many the CNN).",
    )
    warm_start: Literal["after_change", "always", "never"] = Field(
        default="after_change",
        description="When a candidate starts from the served model's weights, its heads "
        "remapped onto the candidate's classes: after_change (the served version was written by "
        "a taxonomy change), always, never (training/warm_start.py).",
    )
    precision_target: float | None = Field(
        default=0.95,
        gt=0,
        lt=1,
        description="Each promoted model gets per-node thresholds, chosen on the holdout, so "
        "that every category its predictions emit (`decision`) meets this precision; unset: none.",
    )
    epsilon: float = Field(
        default=0.005,
        ge=0,
        description="Promotion gate: promote unless holdout accuracy is worse than the serving "
        "model's by more than this.",
    )
    holdout_fraction: float = Field(
        default=0.2, gt=0, lt=1, description="Share of labelled products held out (by id hash)."
    )
    firewall: Literal["hold", "flag", "off"] = Field(
        default="hold",
        description="The label firewall of each job (confident learning on cross-fitted "
        "probabilities, training/firewall.py): hold = suspect exclusive labels go to "
        "`labels.suspect` and the web UI's Review queue and are left out of training and the "
        "holdout until a person confirms them; flag = the same, but still trained on; off.",
    )
    firewall_min_labels: int = Field(
        default=200,
        ge=10,
        description="The firewall judges labels only when a snapshot has at least this many "
        "exclusive labels (fewer cross-fit too weakly), and only labels of classes with 5 or more.",
    )
    work_dir: Path = Field(
        default=Path("var/retrain"), description="Snapshots, candidates and job logs."
    )
    job_timeout_s: float = Field(
        default=3600.0, gt=0, description="A job running longer is killed."
    )
    holdout: Path | None = Field(
        default=None,
        description="Fixed holdout file: JSON lines {product, exclusive} as `prodcat labels "
        "snapshot` writes them; default: the labelled products whose id hash falls in "
        "holdout_fraction.",
    )
    launcher: Literal["subprocess", "kubernetes"] = Field(
        default="subprocess",
        description="subprocess: the job runs beside the trigger; kubernetes: as a Job created "
        "from job_template through the API server (work_dir must be a volume both mount).",
    )
    job_template: Path | None = Field(
        default=None, description="kubernetes: a batch/v1 Job manifest with a `retrain` container."
    )
    kubernetes_api: str = Field(
        default="https://kubernetes.default.svc",
        description="kubernetes: API server URL (the default is the pod's own cluster).",
    )
    kubernetes_namespace: str | None = Field(
        default=None, description="kubernetes: namespace (default: the service account's)."
    )

    @model_validator(mode="after")
    def _template_for_kubernetes(self) -> RetrainSettings:
        if self.launcher == "kubernetes" and self.job_template is None:
            raise ValueError("retrain.launcher=kubernetes needs retrain.job_template")
        return self


class SamplerSettings(_Section):
    """The active-learning sampler agent: which products humans are asked to label."""

    strategy: Literal[
        "least_confidence", "margin", "entropy", "qbc_vote_entropy", "qbc_kl", "density", "random"
    ] = Field(default="margin", description="Acquisition function.")
    density_uncertainty: Literal["least_confidence", "margin", "entropy"] = Field(
        default="margin",
        description="Uncertainty that information density multiplies; also what the QBC "
        "strategies rank by, after the committee-scored ones, for predictions without committee "
        "scores (committee off, or only one model version yet).",
    )
    density_beta: float = Field(default=1.0, ge=0, description="Exponent of the density term.")
    undecided_first: bool = Field(
        default=True,
        description="Predictions whose decision backed off to a parent or abstained (no category "
        "met the precision target) are asked about before any other, each group by its score.",
    )
    density_neighbours: int = Field(default=10, ge=1, description="Neighbours for the density.")
    random_share: float = Field(
        default=0.1, ge=0, le=1, description="Share of each batch chosen uniformly at random."
    )
    diversity_radius: float = Field(
        default=0.1,
        ge=0,
        le=1,
        description="Skip a candidate whose top-k prediction is within this total variation of "
        "one already picked in the window (near-duplicate products); 0 turns it off.",
    )
    batch_size: int = Field(default=50, ge=1, description="Requests chosen per selection window.")
    window_s: float = Field(default=30.0, gt=0, description="Candidates gathered per selection.")
    max_per_minute: float = Field(default=120.0, gt=0, description="Rate limit of requests.")
    pending_ttl_s: float = Field(
        default=7 * 24 * 3600.0, gt=0, description="An unanswered request may be re-issued after."
    )
    max_candidates: int = Field(
        default=10_000,
        ge=1,
        description="A window closes early once it holds this many distinct candidate products.",
    )
    labelled_objectives: tuple[Literal["exclusive", "rule_based"], ...] = Field(
        default=("exclusive",),
        min_length=1,
        description="A product with a label of one of these objectives is never requested "
        "(rule_based labels come from the keyword rules, so they do not count by default).",
    )


class DriftSettings(_Section):
    """The drift agent: live predictions against the serving model's training reference (PSI)."""

    window_predictions: int = Field(
        default=5000, ge=10, description="A window closes once it holds this many predictions."
    )
    window_s: float = Field(
        default=900.0,
        gt=0,
        description="...or once it is this old and holds at least min_window predictions.",
    )
    min_window: int = Field(
        default=500,
        ge=10,
        description="Fewest predictions a PSI is computed from (sampling noise is about "
        "(categories - 1) / n without any drift).",
    )
    bins: int = Field(
        default=10,
        ge=2,
        le=100,
        description="Confidence bins: groups of about equal mass in the reference.",
    )
    epsilon: float = Field(
        default=1e-4, gt=0, lt=0.01, description="Smoothing of the shares in the PSI."
    )

    @model_validator(mode="after")
    def _min_not_above_size(self) -> DriftSettings:
        if self.min_window > self.window_predictions:
            raise ValueError("drift.min_window must not exceed drift.window_predictions")
        return self


class FeedSettings(_Section):
    """How the normaliser learns a feed's profile (docs/feeds.md)."""

    sample_size: int = Field(
        default=500, ge=1, description="A new feed's first records held and profiled together."
    )
    wait_s: float = Field(
        default=10.0, gt=0, description="...or fewer, once this long has passed since the first."
    )
    quiet_s: float = Field(
        default=1.0,
        gt=0,
        description="...or fewer, once the feed sent nothing for this long and at least "
        "min_quiet_sample are held (a feed smaller than the sample does not wait wait_s).",
    )
    min_quiet_sample: int = Field(default=50, ge=1)
    refine_at: int = Field(
        default=1000,
        ge=0,
        description="Re-infer once when this many records were seen, if the first profile came "
        "from fewer (a sorted feed can hide its hierarchy in its first records); 0: never.",
    )
    min_misfits: int = Field(
        default=20, ge=1, description="Records that stop fitting before a re-profile is considered."
    )
    drift_share: float = Field(
        default=0.5,
        gt=0,
        le=1,
        description="...and the share of recent records they must be; fewer misfits are released "
        "after wait_s with the profile they do not fit (and end as dead letters with a reason).",
    )
    google_taxonomy: Path | None = Field(
        default=None,
        description="Google product taxonomy text file, for feeds whose categories are numeric "
        "Google ids (default: taxonomy/google_product_taxonomy*.txt under data_dir, if present).",
    )


class TaxonomySettings(_Section):
    """The category tree every process uses (docs/taxonomy.md): where it comes from, and its
    exclusive subset (the classes of the softmax objective)."""

    source: Path | None = Field(
        default=None,
        description="Taxonomy file: Google product taxonomy text, Best Buy categories JSON, paths "
        "as CSV or JSON lines, or a prodcat tree JSON. Read by `prodcat taxonomy import` and "
        "whenever the taxonomy topic holds no tree yet.",
    )
    format: Literal["auto", "google", "bestbuy", "paths-csv", "paths-jsonl", "tree-json"] = Field(
        default="auto", description="How to read source; auto: from its name and first line."
    )
    rules: Path = Field(
        default=Path("rules.yaml"),
        description="The keyword rules of this taxonomy: `prodcat rules seed` writes them, "
        "`prodcat labels rules` and `prodcat rules evaluate` read them.",
    )
    exclusive_max_depth: int = Field(
        default=3, ge=1, description="Exclusive subset: nodes at this depth or shallower."
    )
    exclusive_min_count: int = Field(
        default=5,
        ge=1,
        description="Exclusive subset: products a node needs of its own (trees with counts; a "
        "tree without counts has the leaves of the tree cut at exclusive_max_depth).",
    )


class EncoderSettings(_Section):
    """The pretrained text encoder (``prodcat dev encoder install``; training/text_encoder.py)."""

    path: Path = Field(
        default=Path(".cache/encoders/bge-small-en-v1.5-q"),
        description="Folder holding model.onnx and tokenizer.json.",
    )
    max_tokens: int = Field(default=64, ge=8, le=512, description="Tokens per text, at most.")
    batch_size: int = Field(default=256, ge=1)


class LocalKafkaSettings(_Section):
    """The local broker (or cluster) that `prodcat dev kafka` runs from Maven Central jars."""

    home: Path = Path("var/kafka")
    jar_cache: Path = Path(".cache/kafka")
    host: str = "127.0.0.1"
    port: int = Field(default=9092, ge=1, le=65535)
    controller_port: int = Field(default=9093, ge=1, le=65535)
    heap: str = "1g"
    start_timeout_s: float = Field(default=90.0, gt=0)
    brokers: int = Field(
        default=1,
        ge=1,
        le=5,
        description="Nodes (broker + controller each); more than one: node i listens on port + 2i "
        "and controller_port + 2i, with its data under home/node-<i>.",
    )


class Settings(BaseSettings):
    """All of prodcat's configuration."""

    model_config = SettingsConfigDict(
        env_prefix="PRODCAT_", env_nested_delimiter="__", frozen=True, extra="ignore"
    )

    home: Path = Field(
        default=Path("."),
        description="Where local state lives; relative paths of every section resolve against it.",
    )
    data_dir: Path = Path("../shared/data")
    kafka: KafkaSettings = KafkaSettings()
    topics: TopicNames = TopicNames()
    serde: SerdeSettings = SerdeSettings()
    worker: WorkerSettings = WorkerSettings()
    serving: ServingSettings = ServingSettings()
    images: ImageSettings = ImageSettings()
    milvus: MilvusSettings = MilvusSettings()
    similarity: SimilaritySettings = SimilaritySettings()
    api: ApiSettings = ApiSettings()
    ui: UiSettings = UiSettings()
    retrain: RetrainSettings = RetrainSettings()
    backfill: BackfillSettings = BackfillSettings()
    sampler: SamplerSettings = SamplerSettings()
    drift: DriftSettings = DriftSettings()
    feeds: FeedSettings = FeedSettings()
    taxonomy: TaxonomySettings = TaxonomySettings()
    local_kafka: LocalKafkaSettings = LocalKafkaSettings()
    encoder: EncoderSettings = EncoderSettings()

    @model_validator(mode="after")
    def _resolve_under_home(self) -> Settings:
        home = self.home.expanduser().resolve()
        # The model is frozen; this runs once, while it is being built.
        object.__setattr__(self, "home", home)
        object.__setattr__(self, "data_dir", _under(home, self.data_dir))
        for name in type(self).model_fields:
            section = getattr(self, name)
            if isinstance(section, _Section):
                object.__setattr__(self, name, _section_under(home, section))
        return self


def _under(home: Path, path: Path) -> Path:
    path = path.expanduser()
    return path if path.is_absolute() else home / path


def _section_under(home: Path, section: _Section) -> _Section:
    update: dict[str, object] = {}
    for name, value in section:
        if isinstance(value, Path) and not value.is_absolute():
            update[name] = _under(home, value)
    if isinstance(section, MilvusSettings) and "://" not in section.uri:
        update["uri"] = str(_under(home, Path(section.uri)))
    return section.model_copy(update=update) if update else section


def load_settings(**overrides: object) -> Settings:
    """Build settings from the environment (and explicit overrides), naming the bad setting on error."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]  # pydantic validates the overrides
    except ValidationError as exc:
        problems = "; ".join(
            f"PRODCAT_{'__'.join(str(p).upper() for p in err['loc'])}: {err['msg']}"
            for err in exc.errors()
        )
        raise ConfigError(f"invalid configuration (environment or arguments): {problems}") from exc
