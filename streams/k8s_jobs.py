"""Training jobs as Kubernetes Jobs: what the retrain trigger launches when it runs in a cluster.

The trigger holds a Job manifest (the Helm chart mounts it from a ConfigMap; its container named
``retrain`` runs ``prodcat retrain run``). For each job :class:`KubernetesJobRunner`

1. copies the manifest, names the Job ``<template name>-v<version>-<random>``, labels it with the
   model version, sets ``backoffLimit: 0`` (a failed job is the trigger's business, not a retry
   loop), ``activeDeadlineSeconds`` (the job timeout) and ``ttlSecondsAfterFinished``, and appends
   ``--version N --result <work_dir>/jobs/vN/result.json`` to the container's args;
2. creates it through the API server (the in-cluster service account: token and CA from the
   mounted secret, namespace from the same place; RBAC needs only ``batch/jobs`` and ``pods/log``);
3. polls it until it succeeds, fails or runs past the deadline, then reads ``result.json`` from the
   work directory, a volume the trigger and the Job share, exactly as :class:`JobRunner` does for a
   local subprocess. A failure's reason carries the Job's condition and the last line of its pod's
   log; a stopped trigger deletes its Job (the labels it covered were never committed, so the next
   trigger retries them), as the subprocess runner kills its child.

No Kubernetes client library: five REST calls with httpx, which the project already uses.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import logging
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml

from prodcat.streams.exceptions import StreamsError
from prodcat.streams.retrain_trigger import JobOutcome

logger = logging.getLogger(__name__)

SERVICE_ACCOUNT = Path("/var/run/secrets/kubernetes.io/serviceaccount")
CONTAINER = "retrain"
VERSION_LABEL = "prodcat.io/model-version"


class JobTemplateError(StreamsError):
    """The Job manifest cannot be used: unreadable, not a batch/v1 Job, or no ``retrain`` container."""


@dataclass(frozen=True)
class ApiServer:
    """Where and how to reach the Kubernetes API."""

    url: str
    namespace: str
    token_file: Path | None = None
    ca_file: Path | None = None

    @classmethod
    def in_cluster(cls, url: str, namespace: str | None = None) -> ApiServer:
        """The API server at ``url`` as the pod's service account (its mounted secret)."""
        if namespace is None:
            try:
                namespace = (SERVICE_ACCOUNT / "namespace").read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise JobTemplateError(
                    "retrain.kubernetes_namespace is unset and there is no service account "
                    f"namespace to read ({exc})"
                ) from exc
        token, ca = SERVICE_ACCOUNT / "token", SERVICE_ACCOUNT / "ca.crt"
        return cls(
            url.rstrip("/"),
            namespace,
            token if token.exists() else None,
            ca if ca.exists() else None,
        )

    def headers(self) -> dict[str, str]:
        # Bound service-account tokens rotate: read the file on every call.
        if self.token_file is None:
            return {}
        return {"Authorization": f"Bearer {self.token_file.read_text(encoding='utf-8').strip()}"}


def load_template(path: Path) -> dict[str, Any]:
    """Read and check the Job manifest."""
    try:
        manifest = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise JobTemplateError(f"cannot read the Job template {path}: {exc}") from exc
    if not isinstance(manifest, dict) or manifest.get("kind") != "Job":
        raise JobTemplateError(f"{path} is not a Kubernetes Job manifest")
    containers = manifest.get("spec", {}).get("template", {}).get("spec", {}).get("containers")
    if not any(c.get("name") == CONTAINER for c in containers or []):
        raise JobTemplateError(f"{path}: the Job has no container named {CONTAINER!r}")
    return manifest


def job_manifest(
    template: dict[str, Any], version: int, result_path: Path, timeout_s: float
) -> dict[str, Any]:
    """The Job for training ``version``: a copy of ``template`` named, labelled and bounded."""
    job = copy.deepcopy(template)
    meta = job.setdefault("metadata", {})
    base = str(meta.get("name") or "prodcat-retrain")[:40].rstrip("-")
    meta["name"] = f"{base}-v{version}-{secrets.token_hex(3)}"
    meta.pop("generateName", None)
    meta.pop("namespace", None)
    meta.setdefault("labels", {})[VERSION_LABEL] = str(version)
    spec = job["spec"]
    spec["backoffLimit"] = 0
    spec["activeDeadlineSeconds"] = max(1, int(timeout_s))
    spec.setdefault("ttlSecondsAfterFinished", 24 * 3600)
    pod = spec["template"]
    pod.setdefault("metadata", {}).setdefault("labels", {})[VERSION_LABEL] = str(version)
    pod["spec"]["restartPolicy"] = "Never"
    for container in pod["spec"]["containers"]:
        if container.get("name") == CONTAINER:
            container["args"] = [
                *container.get("args", []),
                "--version",
                str(version),
                "--result",
                str(result_path),
            ]
    return job


class KubernetesJobRunner:
    """Runs one training job as a Kubernetes Job; the same contract as :class:`JobRunner`."""

    def __init__(
        self,
        *,
        api: ApiServer,
        template: dict[str, Any],
        work_dir: Path,
        timeout_s: float,
        poll_s: float = 2.0,
    ) -> None:
        self.api = api
        self.template = template
        self.work_dir = work_dir
        self.timeout_s = timeout_s
        self.poll_s = poll_s

    def _client(self) -> httpx.AsyncClient:
        verify: Any = str(self.api.ca_file) if self.api.ca_file else True
        return httpx.AsyncClient(base_url=self.api.url, verify=verify, timeout=30.0)

    @property
    def _jobs(self) -> str:
        return f"/apis/batch/v1/namespaces/{self.api.namespace}/jobs"

    async def run(self, version: int) -> JobOutcome:
        folder = self.work_dir / "jobs" / f"v{version}"
        folder.mkdir(parents=True, exist_ok=True)
        result_path = folder / "result.json"
        result_path.unlink(missing_ok=True)
        job = job_manifest(self.template, version, result_path, self.timeout_s)
        name = job["metadata"]["name"]
        started = time.monotonic()
        async with self._client() as client:
            try:
                try:
                    response = await client.post(self._jobs, json=job, headers=self.api.headers())
                    response.raise_for_status()
                except httpx.HTTPError as exc:
                    reason = f"creating Job {name} failed: {_http_reason(exc)}"
                    return JobOutcome("failed", version, reason, time.monotonic() - started)
                logger.info("retrain: started Kubernetes Job %s for v%d", name, version)
                ended = await self._wait(client, name, started)
            except asyncio.CancelledError:
                # The trigger is stopping: its job must not outlive it, even when the stop came
                # while the create was on the wire (the API server may have made the Job already).
                with contextlib.suppress(Exception):
                    await asyncio.shield(self._delete(client, name))
                raise
            seconds = time.monotonic() - started
            if ended is None:
                await self._delete(client, name)
                reason = f"job timed out after {self.timeout_s:g}s (Job {name}, deleted)"
                return JobOutcome("timeout", version, reason, seconds)
            state, why = ended
            if state != "succeeded":
                outcome = "timeout" if why.startswith("DeadlineExceeded") else "failed"
                tail = await self._log_tail(client, name)
                reason = f"Job {name} failed: {why}" + (f": {tail}" if tail else "")
                return JobOutcome(outcome, version, reason, seconds)
        try:
            result = json.loads(result_path.read_text(encoding="utf-8"))
            outcome, reason = str(result["outcome"]), str(result["reason"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            reason = f"Job {name} succeeded without a readable result {result_path}: {exc}"
            return JobOutcome("failed", version, reason, seconds)
        return JobOutcome(outcome, int(result.get("version", version)), reason, seconds, result)

    async def _wait(
        self, client: httpx.AsyncClient, name: str, started: float
    ) -> tuple[str, str] | None:
        """("succeeded" | "failed", why) when the Job ends; None past the local deadline.

        The local deadline adds a minute to ``activeDeadlineSeconds``, for a Job the cluster never
        schedules or an API server that stops answering.
        """
        deadline = started + self.timeout_s + 60
        while time.monotonic() < deadline:
            try:
                response = await client.get(f"{self._jobs}/{name}", headers=self.api.headers())
                response.raise_for_status()
                status = response.json().get("status", {})
            except httpx.HTTPStatusError as exc:
                code = exc.response.status_code
                if 400 <= code < 500 and code != 429:  # deleted by hand, or RBAC: it will not heal
                    return "failed", f"reading the Job failed: {_http_reason(exc)}"
                logger.warning("retrain: reading Job %s failed (%s); retrying", name, exc)
                status = {}
            except (httpx.HTTPError, ValueError) as exc:
                logger.warning("retrain: reading Job %s failed (%s); retrying", name, exc)
                status = {}
            for condition in status.get("conditions") or []:
                if condition.get("status") != "True":
                    continue
                kind = condition.get("type")
                if kind in ("Complete", "SuccessCriteriaMet"):
                    return "succeeded", ""
                if kind in ("Failed", "FailureTarget"):
                    why = f"{condition.get('reason', '')} {condition.get('message', '')}"
                    return "failed", why.strip()
            if status.get("succeeded"):
                return "succeeded", ""
            if status.get("failed"):
                return "failed", "pod failed"
            await asyncio.sleep(self.poll_s)
        return None

    async def _delete(self, client: httpx.AsyncClient, name: str) -> None:
        with contextlib.suppress(httpx.HTTPError):
            await client.request(
                "DELETE",
                f"{self._jobs}/{name}",
                json={"propagationPolicy": "Background"},
                headers=self.api.headers(),
            )

    async def _log_tail(self, client: httpx.AsyncClient, name: str) -> str:
        """The last non-empty line of the Job's pod log ('' when there is none to read)."""
        pods = f"/api/v1/namespaces/{self.api.namespace}/pods"
        try:
            listed = await client.get(
                pods, params={"labelSelector": f"job-name={name}"}, headers=self.api.headers()
            )
            listed.raise_for_status()
            items = listed.json().get("items") or []
            if not items:
                return ""
            pod = items[0]["metadata"]["name"]
            log = await client.get(
                f"{pods}/{pod}/log",
                params={"container": CONTAINER, "tailLines": "20"},
                headers=self.api.headers(),
            )
            log.raise_for_status()
        except (httpx.HTTPError, ValueError, KeyError, TypeError):
            return ""
        lines = [line for line in log.text.splitlines() if line.strip()]
        return lines[-1][-400:] if lines else ""


def _http_reason(exc: httpx.HTTPError) -> str:
    if isinstance(exc, httpx.HTTPStatusError):
        return f"HTTP {exc.response.status_code} {exc.response.text[:300]}"
    return f"{type(exc).__name__}: {exc}"


__all__ = ["ApiServer", "JobTemplateError", "KubernetesJobRunner", "job_manifest", "load_template"]
