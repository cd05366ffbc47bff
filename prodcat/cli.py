"""The ``prodcat`` command: workers, local services, replay and the demo."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from prodcat.exceptions import ProdcatError
from prodcat.settings import Settings, load_settings
from schemas.exceptions import SerdeError
from streams.exceptions import StreamsError
from training.exceptions import TrainingError

logger = logging.getLogger("prodcat")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="prodcat", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    dev = sub.add_parser("dev", help="local development services")
    dev_sub = dev.add_subparsers(dest="service", required=True)
    kafka = dev_sub.add_parser("kafka", help="single-node Apache Kafka (KRaft) from Maven Central")
    kafka.add_argument("action", choices=["start", "stop", "status", "install"])

    topics = sub.add_parser("topics", help="create the topics prodcat owns")
    topics.add_argument("action", choices=["create", "list"])

    worker = sub.add_parser("worker", help="run a Faust worker for one or more agent roles")
    worker.add_argument("roles", nargs="+", help="agent roles, e.g. normalize")

    replay = sub.add_parser("replay", help="publish datasets as raw product events")
    replay.add_argument("--feeds", default="flipkart,myntra", help="comma-separated feeds")
    replay.add_argument("--rate", type=float, default=None, help="events per second (default: max)")
    replay.add_argument("--limit", type=int, default=None, help="events per feed at most")
    replay.add_argument("--topic", default=None, help="target topic (default: topics.raw)")
    replay.add_argument("--no-progress", action="store_true")

    rules = sub.add_parser("rules", help="the legacy keyword rule system (a label source)")
    rules.add_argument("action", choices=["seed", "evaluate"])
    rules.add_argument("--file", type=Path, default=None, help="rules YAML (default: Flipkart's)")

    baseline = sub.add_parser(
        "baseline", help="TF-IDF + LinearSVC on the fixed evaluation protocol"
    )
    baseline.add_argument("--levels", default="1,2,3", help="tree levels, comma-separated")

    train = sub.add_parser(
        "train", help="train on the fixed protocol, evaluate, export for TF Serving"
    )
    train.add_argument("--config", type=Path, default=Path("training/configs/cnn.yaml"))
    train.add_argument("--level", type=int, default=3)
    train.add_argument("--name", default="classifier", help="model name under the model base")
    train.add_argument("--model-base", type=Path, default=Path("models"))
    train.add_argument(
        "--compare",
        nargs="*",
        type=Path,
        default=None,
        help="instead: compare these configs (single and multi-objective) + baseline",
    )
    train.add_argument("--levels", default="3", help="with --compare: levels, comma-separated")

    demo = sub.add_parser("demo", help="run the whole pipeline locally on the shared datasets")
    demo.add_argument("--limit", type=int, default=None, help="events per feed at most")
    return parser


def _dev_kafka(settings: Settings, action: str) -> int:
    from prodcat import localkafka

    cfg = settings.local_kafka
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


def _topics(settings: Settings, action: str) -> int:
    from streams.topics import ensure_topics, topic_specs

    specs = topic_specs(settings.topics)
    if action == "create":
        for name, state in ensure_topics(settings.kafka, specs).items():
            print(f"{name}: {state}")
    else:
        for spec in specs:
            print(f"{spec.name}: {spec.partitions} partitions {spec.config}")
    return 0


def _replay(settings: Settings, args: argparse.Namespace) -> int:
    from streams.replay import dataset_events, replay

    feeds = [f.strip() for f in args.feeds.split(",") if f.strip()]
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


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        settings = load_settings()
        if args.command == "dev":
            return _dev_kafka(settings, args.action)
        if args.command == "topics":
            return _topics(settings, args.action)
        if args.command == "worker":
            from streams.worker import run_worker

            run_worker(settings, args.roles)
            return 0
        if args.command == "replay":
            return _replay(settings, args)
        if args.command == "rules":
            from training import commands
            from training.rules import FLIPKART_RULES

            target = args.file or FLIPKART_RULES
            if args.action == "seed":
                count = commands.seed_flipkart_rules(settings.data_dir, target)
                print(f"wrote {count} rules to {target}")
            else:
                print(commands.evaluate_flipkart_rules(settings.data_dir, target))
            return 0
        if args.command == "baseline":
            from training.commands import baseline_table

            print(baseline_table(settings.data_dir, [int(x) for x in args.levels.split(",")]))
            return 0
        if args.command == "train":
            from training import train_command

            if args.compare is not None:
                levels = [int(x) for x in args.levels.split(",")]
                print(train_command.compare(args.compare, settings.data_dir, levels))
                return 0
            result, target = train_command.train_and_export(
                args.config, settings.data_dir, args.model_base, args.name, args.level
            )
            print(
                f"L{result.level} accuracy {result.accuracy:.4f}, macro-F1 {result.macro_f1:.4f}, "
                f"ECE {result.ece:.4f}, trained in {result.train_seconds:.0f}s → {target}"
            )
            return 0
        if args.command == "demo":
            from prodcat.demo import run_demo

            return run_demo(settings, limit=args.limit)
    except (ProdcatError, StreamsError, SerdeError, TrainingError) as exc:
        logger.error("%s", exc)
        return 2
    except KeyboardInterrupt:
        return 130
    raise AssertionError(f"unhandled command {args.command}")  # argparse enforces the choices


if __name__ == "__main__":
    sys.exit(main())
