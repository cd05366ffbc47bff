"""docs/getting-started.md, run as a user would: its ```bash blocks in order, in one shell.

On a real broker, nothing Flipkart: the Google taxonomy as the tree, two development feeds
published, rules seeded, labels imported, the first model trained by the retrain loop, and
predictions whose categories are Google taxonomy nodes. The test replaces only the work
directory (``WORK=``) and gives the shell its broker, topics and ports as ``PRODCAT_*``
variables; between blocks it waits for what a user would wait for and checks the outcome.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from prodcat.core.settings import RetrainSettings, ServingSettings, Settings
from prodcat.schemas.serde import serde_for
from prodcat.streams.readback import read_topics
from prodcat.streams.worker_process import worker_env

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parent.parent
GUIDE = ROOT / "docs" / "getting-started.md"
GOOGLE = "taxonomy/google_product_taxonomy_2021-09-21.txt"


class Shell:
    """One bash process, like a user's terminal: variables and background jobs persist."""

    def __init__(self, env: dict[str, str], cwd: Path, state: Path) -> None:
        self.cwd = state
        self.proc = subprocess.Popen(
            ["bash", "--norc", "--noprofile"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
            cwd=cwd,
        )
        self.lines: list[str] = []
        self._cond = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self._cond:
                self.lines.append(line)
                self._cond.notify_all()

    def run(self, block: str, timeout_s: float = 120) -> str:
        """Run a block (errexit, pipefail); its output, or a failure with the output so far."""
        assert self.proc.stdin is not None
        marker = f"__done_{time.monotonic_ns()}__"
        start = len(self.lines)
        exports = self.cwd / ".getting-started.env"  # what the block exported, kept for the next
        script = (
            f"(set -eo pipefail\n{block}\nexport -p > {exports}\n) && source {exports} "
            f"&& echo {marker}=0 || echo {marker}=$?\n"
        )
        # a trailing `&` job must outlive the subshell: run those lines in the shell itself
        if block.rstrip().endswith("&"):
            script = f"{block}\necho {marker}=0\n"
        self.proc.stdin.write(script)
        self.proc.stdin.flush()
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while not any(line.startswith(marker) for line in self.lines[start:]):
                if not self._cond.wait(max(0.0, deadline - time.monotonic())):
                    pytest.fail(
                        f"timed out after {timeout_s:.0f}s in:\n{block}\n" + self.out(start)
                    )
            out = self.out(start)
        rc = out.rsplit(f"{marker}=", 1)[1].strip()
        text = out.rsplit(marker, 1)[0]
        if rc != "0":
            pytest.fail(f"exit {rc} in:\n{block}\n--- output ---\n{text}")
        return text

    def out(self, start: int) -> str:
        return "".join(self.lines[start:])

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write("kill $(jobs -p) 2>/dev/null; wait; exit\n")
        self.proc.stdin.flush()
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._reader.join(10)
        self.proc.stdin.close()
        if self.proc.stdout is not None:
            self.proc.stdout.close()


def _blocks() -> list[str]:
    return re.findall(r"```bash\n(.*?)```", GUIDE.read_text(encoding="utf-8"), re.S)


def _wait_ready(settings: Settings, shell: Shell, timeout_s: float = 120) -> None:
    worker = settings.worker
    deadline = time.monotonic() + timeout_s
    url = f"http://{worker.metrics_host}:{worker.metrics_port}/metrics"
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                text = resp.read().decode()
            if all(f'prodcat_worker_ready{{stage="{s}"}} 1.0' in text for s in ("normalize",)):
                return
        except OSError:
            pass
        time.sleep(0.5)
    pytest.fail("worker not ready:\n" + _log(settings, shell))


def _log(settings: Settings, shell: Shell) -> str:
    work = settings.retrain.work_dir.parent
    parts = []
    for path in [work / "worker.log", *sorted(work.glob("retrain/jobs/*/job.log"))]:
        if path.is_file():
            parts.append(f"--- {path}\n{path.read_text(errors='replace')[-4000:]}")
    return "\n".join(parts)


def test_the_getting_started_guide_runs_end_to_end(
    pipeline_settings: Settings, data_dir: Path, tmp_path: Path
) -> None:
    from prodcat.serving.web.annotation import VocabularyCache
    from prodcat.streams.taxonomy_store import configured_taxonomy, load_taxonomy
    from prodcat.training.taxonomy_files import read_taxonomy_file

    work = tmp_path / "getting-started"
    # what the guide's exports set, seen from this process (for the checks below)
    settings = pipeline_settings.model_copy(
        update={
            "serving": ServingSettings(model_base=work / "models", poll_interval_s=1.0),
            "retrain": RetrainSettings(work_dir=work / "retrain", check_interval_s=1.0),
        }
    )
    env = worker_env(settings)
    env["PRODCAT_UI__USERS_FILE"] = str(tmp_path / "ui" / "users.json")
    env["PRODCAT_UI__STATE_DIR"] = str(tmp_path / "ui")
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["PRODCAT_DATA_DIR"] = str(data_dir)
    blocks = _blocks()
    assert len(blocks) == 9, "the guide's steps changed: update this test"
    setup, taxonomy, worker, publish, show, rules, labels, model, ui = blocks
    assert "export WORK=var/getting-started" in setup

    shell = Shell(env, ROOT, tmp_path)
    started = time.monotonic()
    try:
        shell.run(setup.replace("WORK=var/getting-started", f"WORK={work}"))
        assert (work / "shop_de.jsonl").is_file() and (work / "shop_se.jsonl").is_file()

        out = shell.run(taxonomy)
        live = load_taxonomy(settings)
        google = read_taxonomy_file(data_dir / GOOGLE)
        assert {n.id for n in live} == {n.id for n in google}
        assert "Animals & Pet Supplies" in out

        shell.run(worker)
        _wait_ready(settings, shell)

        shell.run(publish)
        normalized = read_topics(
            settings.kafka, [settings.topics.normalized], expected=600, timeout_s=90
        )
        assert len({r.key for r in normalized}) == 600

        out = shell.run(show)
        assert "shop_de" in out and "shop_se" in out

        out = shell.run(rules)
        assert (work / "rules.yaml").is_file()
        assert "published" in out

        out = shell.run(labels)
        [count] = re.findall(r"^\s*(\d+)\s*$", out, re.M)
        assert int(count) - 1 >= 300  # a few hundred labels (the CSV's lines less its header)
        assert f"published {int(count) - 1} labels" in out and "0 dead letters" in out

        out = shell.run(model, timeout_s=300)
        card_dir = work / "models" / "classifier" / "1"
        assert (card_dir / "saved_model.pb").is_file()
        assert "Food, Beverages & Tobacco > Beverages > Alcoholic Beverages > Wine" in out

        # predictions for every published product, from version 1, in Google categories
        paths = {node.id: list(node.path) for node in google}
        serde = serde_for("Prediction")
        records = read_topics(
            settings.kafka, [settings.topics.predictions], expected=600, timeout_s=120
        )
        predictions = {r.key: serde.decode(r.value or b"") for r in records if r.value}
        assert len(predictions) == 600, _log(settings, shell)
        for prediction in predictions.values():
            assert prediction["model_version"] == 1
            for score in prediction["exclusive_top_k"]:
                assert paths[score["category_id"]] == score["path"]
        top = [p["exclusive_top_k"][0]["category_id"] for p in predictions.values()]
        assert top.count("421") > 100  # wine, from both shops

        # the UI: an account, and its category search finds the user's own categories
        user_add, _serve = ui.strip().splitlines()
        shell.run(user_add)
        cache = VocabularyCache(settings, taxonomy=lambda: configured_taxonomy(settings))
        found = {c["category_id"]: c["path"] for c in cache.search("wine", 50)}
        assert found["421"] == "Food, Beverages & Tobacco > Beverages > Alcoholic Beverages > Wine"
        print(f"guide ran in {time.monotonic() - started:.0f}s")
    finally:
        shell.close()
