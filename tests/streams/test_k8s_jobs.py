"""The retrain trigger's Kubernetes Job launcher against a local stand-in of the API server.

There is no cluster here. The stand-in speaks the part of the Kubernetes REST API the launcher uses
(create, read and delete a batch/v1 Job; list a Job's pods; read a pod's log) and plays the kubelet
by running the Job's container command as a local process, so the launcher's whole protocol runs:
the manifest it sends, polling to the end, the shared result file, log tails, deadlines, deletion.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from prodcat.core.settings import RetrainSettings
from prodcat.streams.k8s_jobs import (
    VERSION_LABEL,
    ApiServer,
    JobTemplateError,
    KubernetesJobRunner,
    load_template,
)

NS = "prodcat"
TOKEN = "t0ken"
JOBS = f"/apis/batch/v1/namespaces/{NS}/jobs"
PODS = f"/api/v1/namespaces/{NS}/pods"

#: The container's program: `prodcat retrain run --version N --result PATH` in miniature.
JOB_SCRIPT = """
import json, sys, time
args = sys.argv[1:]
mode = args[0]
version, result = int(args[args.index("--version") + 1]), args[args.index("--result") + 1]
print("training v%d" % version, flush=True)
if mode == "fail":
    print("boom: out of memory", flush=True)
    sys.exit(3)
if mode == "hang":
    time.sleep(60)
with open(result, "w") as f:
    json.dump({"outcome": "promoted", "reason": "better on the holdout", "version": version}, f)
"""


@dataclass
class StandIn:
    """State of the stand-in API server: Jobs created, their processes, requests seen."""

    jobs: dict[str, dict[str, Any]] = field(default_factory=dict)
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    started: dict[str, float] = field(default_factory=dict)
    logs: dict[str, Path] = field(default_factory=dict)
    deleted: list[str] = field(default_factory=list)
    auth: list[str | None] = field(default_factory=list)
    refuse_create: bool = False
    vanish: bool = False  # someone deletes every Job right after it is created
    create_reply_delay_s: float = 0.0  # the Job exists this long before the create is answered
    log_dir: Path = Path()
    lock: threading.Lock = field(default_factory=threading.Lock)

    def status(self, name: str) -> dict[str, Any]:
        proc, manifest = self.procs[name], self.jobs[name]
        deadline = manifest["spec"].get("activeDeadlineSeconds")
        code = proc.poll()
        if code is None and deadline and time.monotonic() - self.started[name] > deadline:
            proc.kill()
            proc.wait()
            return _failed("DeadlineExceeded", "Job was active longer than specified deadline")
        if code is None:
            return {"active": 1}
        if code == 0:
            return {"succeeded": 1, "conditions": [{"type": "Complete", "status": "True"}]}
        return _failed("BackoffLimitExceeded", "Job has reached the specified backoff limit")


def _failed(reason: str, message: str) -> dict[str, Any]:
    condition = {"type": "Failed", "status": "True", "reason": reason, "message": message}
    return {"failed": 1, "conditions": [condition]}


def _handler(state: StandIn) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _reply(self, code: int, body: Any) -> None:
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # the client left
                self.send_response(code)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        def _body(self) -> Any:
            length = int(self.headers.get("Content-Length") or 0)
            return json.loads(self.rfile.read(length) or b"{}")

        def do_POST(self) -> None:
            state.auth.append(self.headers.get("Authorization"))
            if self.path != JOBS:
                return self._reply(404, {"message": "not found"})
            if state.refuse_create:
                return self._reply(403, {"message": 'jobs.batch is forbidden: User "x"'})
            job = self._body()
            name = job["metadata"]["name"]
            container = job["spec"]["template"]["spec"]["containers"][0]
            log = state.log_dir / f"{name}.log"
            with state.lock, log.open("wb") as out:
                state.jobs[name] = job
                state.logs[name] = log
                state.started[name] = time.monotonic()
                state.procs[name] = subprocess.Popen(
                    [*container["command"], *container["args"]], stdout=out, stderr=out
                )
            time.sleep(state.create_reply_delay_s)
            self._reply(201, job)

        def do_GET(self) -> None:
            path, _, query = self.path.partition("?")
            if path.startswith(JOBS + "/"):
                name = path.rsplit("/", 1)[1]
                with state.lock:
                    if name not in state.jobs or state.vanish:
                        return self._reply(404, {"message": f'jobs.batch "{name}" not found'})
                    job = {**state.jobs[name], "status": state.status(name)}
                return self._reply(200, job)
            if path == PODS:
                name = query.split("job-name%3D", 1)[-1].split("&", 1)[0]
                items = [{"metadata": {"name": f"{name}-pod"}}] if name in state.jobs else []
                return self._reply(200, {"items": items})
            if path.startswith(PODS + "/") and path.endswith("/log"):
                name = path.split("/")[-2].removesuffix("-pod")
                return self._reply(200, state.logs[name].read_bytes())
            self._reply(404, {"message": "not found"})

        def do_DELETE(self) -> None:
            name = self.path.rsplit("/", 1)[1]
            with state.lock:
                state.deleted.append(name)
                proc = state.procs.get(name)
                if proc is not None and proc.poll() is None:
                    proc.kill()
                    proc.wait()
            self._reply(200, {"status": "Success"})

        def log_message(self, format: str, *args: object) -> None:
            pass

    return Handler


@pytest.fixture
def api(tmp_path: Path) -> Iterator[tuple[StandIn, ApiServer]]:
    state = StandIn(log_dir=tmp_path)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    token = tmp_path / "token"
    token.write_text(TOKEN + "\n")
    try:
        yield state, ApiServer(f"http://127.0.0.1:{server.server_port}", NS, token_file=token)
    finally:
        server.shutdown()
        server.server_close()
        for proc in state.procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def _template(mode: str) -> dict[str, Any]:
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "prodcat-retrain", "labels": {"app.kubernetes.io/name": "prodcat"}},
        "spec": {
            "template": {
                "spec": {
                    "restartPolicy": "OnFailure",
                    "containers": [
                        {
                            "name": "retrain",
                            "image": "prodcat:1",
                            "command": [sys.executable, "-c", JOB_SCRIPT],
                            "args": [mode],
                        }
                    ],
                }
            }
        },
    }


def _runner(
    api: ApiServer, tmp_path: Path, mode: str, timeout_s: float = 60
) -> KubernetesJobRunner:
    return KubernetesJobRunner(
        api=api,
        template=_template(mode),
        work_dir=tmp_path / "work",
        timeout_s=timeout_s,
        poll_s=0.1,
    )


async def test_a_job_runs_to_its_result(api: tuple[StandIn, ApiServer], tmp_path: Path) -> None:
    state, server = api
    outcome = await _runner(server, tmp_path, "ok").run(7)
    assert (outcome.outcome, outcome.version, outcome.reason) == (
        "promoted",
        7,
        "better on the holdout",
    )
    [(name, job)] = state.jobs.items()
    assert name.startswith("prodcat-retrain-v7-") and len(name) <= 63
    assert job["metadata"]["labels"] == {"app.kubernetes.io/name": "prodcat", VERSION_LABEL: "7"}
    spec = job["spec"]
    assert (spec["backoffLimit"], spec["activeDeadlineSeconds"]) == (0, 60)
    assert spec["template"]["spec"]["restartPolicy"] == "Never"
    assert spec["template"]["metadata"]["labels"][VERSION_LABEL] == "7"
    result = tmp_path / "work" / "jobs" / "v7" / "result.json"
    assert spec["template"]["spec"]["containers"][0]["args"] == [
        "ok",
        "--version",
        "7",
        "--result",
        str(result),
    ]
    assert state.auth == [f"Bearer {TOKEN}"]
    assert state.deleted == []


async def test_a_failed_job_reports_its_condition_and_log_tail(
    api: tuple[StandIn, ApiServer], tmp_path: Path
) -> None:
    _state, server = api
    outcome = await _runner(server, tmp_path, "fail").run(3)
    assert outcome.outcome == "failed"
    assert "BackoffLimitExceeded" in outcome.reason
    assert outcome.reason.endswith(": boom: out of memory")


async def test_a_job_past_its_deadline_is_a_timeout(
    api: tuple[StandIn, ApiServer], tmp_path: Path
) -> None:
    state, server = api
    outcome = await _runner(server, tmp_path, "hang", timeout_s=1).run(4)
    assert outcome.outcome == "timeout"
    assert "DeadlineExceeded" in outcome.reason
    assert all(proc.poll() is not None for proc in state.procs.values())


async def test_a_stopping_trigger_deletes_its_job(
    api: tuple[StandIn, ApiServer], tmp_path: Path
) -> None:
    state, server = api
    task = asyncio.create_task(_runner(server, tmp_path, "hang").run(5))
    for _ in range(100):
        if state.jobs:
            break
        await asyncio.sleep(0.05)
    [name] = state.jobs
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert state.deleted == [name]
    assert state.procs[name].poll() is not None


async def test_a_trigger_stopped_while_its_create_is_on_the_wire_deletes_the_job(
    api: tuple[StandIn, ApiServer], tmp_path: Path
) -> None:
    state, server = api
    state.create_reply_delay_s = 2.0
    task = asyncio.create_task(_runner(server, tmp_path, "hang").run(8))
    for _ in range(100):
        if state.jobs:
            break
        await asyncio.sleep(0.05)
    [name] = state.jobs
    task.cancel()  # the API server has made the Job; its answer has not arrived
    with pytest.raises(asyncio.CancelledError):
        await task
    assert state.deleted == [name]
    assert state.procs[name].poll() is not None


async def test_a_refused_create_is_a_failed_job(
    api: tuple[StandIn, ApiServer], tmp_path: Path
) -> None:
    state, server = api
    state.refuse_create = True
    outcome = await _runner(server, tmp_path, "ok").run(6)
    assert outcome.outcome == "failed"
    assert "HTTP 403" in outcome.reason and "forbidden" in outcome.reason


def test_templates_are_checked(tmp_path: Path) -> None:
    good = tmp_path / "job.yaml"
    good.write_text(yaml.safe_dump(_template("ok")))
    assert load_template(good)["kind"] == "Job"
    not_a_job = tmp_path / "deploy.yaml"
    not_a_job.write_text(yaml.safe_dump({**_template("ok"), "kind": "Deployment"}))
    with pytest.raises(JobTemplateError, match="not a Kubernetes Job"):
        load_template(not_a_job)
    template = _template("ok")
    template["spec"]["template"]["spec"]["containers"][0]["name"] = "train"
    unnamed = tmp_path / "unnamed.yaml"
    unnamed.write_text(yaml.safe_dump(template))
    with pytest.raises(JobTemplateError, match="no container named 'retrain'"):
        load_template(unnamed)
    with pytest.raises(JobTemplateError, match="cannot read"):
        load_template(tmp_path / "missing.yaml")
    with pytest.raises(ValidationError, match=r"needs retrain\.job_template"):
        RetrainSettings(launcher="kubernetes")


async def test_a_job_deleted_under_the_trigger_fails_at_once(
    api: tuple[StandIn, ApiServer], tmp_path: Path
) -> None:
    state, server = api
    state.vanish = True
    outcome = await _runner(server, tmp_path, "hang", timeout_s=600).run(8)
    assert outcome.outcome == "failed"
    assert "HTTP 404" in outcome.reason and "not found" in outcome.reason
    assert outcome.seconds < 60  # not the local deadline of timeout + 60 s
