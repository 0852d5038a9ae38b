"""Mirror committed lineage records to Weights & Biases, with the real wandb SDK.

An output becomes a W&B artifact of the same name and type (its kind) holding *references* to
its files (``file://...``, no upload) plus a small ``nemotron-artifact.json`` with the record,
aliased ``nemotron-vN`` (our version) and ``latest``. Inputs are declared on the same run so that
W&B draws the same graph:

* online: ``run.use_artifact("NAME:nemotron-vN")``, the version its own stage logged; if it never
  reached W&B, ``use_artifact`` of an artifact built from its record (same references and record
  file as its own stage would log, hence the same W&B digest);
* offline: ``use_artifact`` refuses to run, so the input is written to the run files as an
  artifact flagged *use after commit*, which syncing turns into the same "used" edge.

The local record is the truth. Any W&B problem (wandb missing, server unreachable, bad key)
is raised to ``Store``, which warns and keeps the record ``pending``; ``nemotron artifacts sync``
pushes it later. wandb is imported only inside these functions.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import socket
import urllib.parse
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

from nemotron.errors import UserError
from nemotron.lineage.records import Artifact, local_path


class Store(Protocol):
    """What the mirror needs of the lineage store (the store calls the mirror, not back)."""

    wandb: Mapping[str, Any] | None

    def get(self, name: str, version: Any) -> Artifact: ...

    def set_mirror(self, artifact: Artifact, status: str, *, url: str | None = None,
                   error: str | None = None) -> Artifact: ...

    def unsynced(self, *, include_unconfigured: bool = False) -> list[Artifact]: ...

log = logging.getLogger("nemotron.lineage")

RECORD_FILE = "nemotron-artifact.json"
DEFAULT_BASE_URL = "https://api.wandb.ai"


class MirrorUnavailable(RuntimeError):
    """W&B cannot be reached or used right now (the record stays pending)."""


@dataclass
class SyncReport:
    planned: list[str] = field(default_factory=list)
    pushed: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)


# ---------------------------------------------------------------------------- settings


def _mode(target: Mapping[str, Any]) -> str:
    return str(target.get("mode") or os.environ.get("WANDB_MODE") or "online").lower()


def _base_url(target: Mapping[str, Any]) -> str:
    return str(target.get("base_url") or os.environ.get("WANDB_BASE_URL") or DEFAULT_BASE_URL)


def _timeout() -> float:
    return float(os.environ.get("NEMOTRON_WANDB_TIMEOUT", "30"))


def probe(base_url: str, timeout: float = 3.0) -> None:
    """Fail fast (MirrorUnavailable) when nothing listens at the W&B host.

    wandb itself retries for a long while before giving up; a TCP connect says in seconds
    whether trying is worth it. Skipped behind an HTTP(S) proxy or with NEMOTRON_WANDB_PROBE=0.
    """
    if os.environ.get("NEMOTRON_WANDB_PROBE", "1") == "0":
        return
    url = urllib.parse.urlparse(base_url)
    host = url.hostname
    if not host:
        raise MirrorUnavailable(f"W&B base URL {base_url!r} has no host")
    if urllib.request.getproxies().get(url.scheme) and not urllib.request.proxy_bypass(host):
        return
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError as err:
        raise MirrorUnavailable(f"W&B at {base_url} is unreachable ({err})") from None


def _import_wandb() -> Any:
    try:
        import wandb
    except ImportError:
        raise MirrorUnavailable(
            "the wandb package is not installed (pip install 'nemotron[wandb]')"
        ) from None
    return wandb


# ---------------------------------------------------------------------------- building


def record_bytes(artifact: Artifact) -> bytes:
    """The record file put into the W&B artifact: fixed for a given version, so the same
    version always gives the same W&B digest (which is how an input maps onto its version)."""
    return (json.dumps(artifact.to_dict(), indent=2, sort_keys=True) + "\n").encode("utf-8")


def build_artifact(artifact: Artifact) -> Any:
    """A draft ``wandb.Artifact`` for a record: references to its files plus the record file."""
    wandb = _import_wandb()
    producer = artifact.producer
    draft = wandb.Artifact(
        name=artifact.name,
        type=artifact.kind,
        description=f"{artifact.ref} ({artifact.kind}) registered by nemotron",
        metadata={
            **artifact.metadata,
            "nemotron": {
                "version": artifact.version,
                "identity": artifact.identity,
                "path": artifact.path,
                "config_hash": artifact.config_hash,
                "inputs": [i.ref for i in artifact.inputs],
                "stage": producer.stage if producer else None,
                "job_id": producer.job_id if producer else None,
                "git_commit": producer.git_commit if producer else None,
            },
        },
    )
    local = local_path(artifact.path)
    if local is not None and local.exists():
        draft.add_reference(local.as_uri(), checksum=False)
    elif local is None:
        try:
            draft.add_reference(artifact.path, checksum=False)
        except Exception as err:  # noqa: BLE001 - an odd URI must not stop the mirror
            log.info("W&B: no reference for %s (%s)", artifact.path, err)
    with draft.new_file(RECORD_FILE, mode="wb") as handle:
        handle.write(record_bytes(artifact))
    return draft


def version_alias(artifact: Artifact) -> str:
    """The W&B alias that names our version exactly (W&B numbers its versions itself)."""
    return f"nemotron-{artifact.version}"


def _declare_inputs(run: Any, store: Store, artifact: Artifact, offline: bool) -> None:
    for used in artifact.inputs:
        if used.name is None or used.version is None:
            continue  # a plain path: it is named in the output's metadata
        parent = store.get(used.name, used.version)
        if parent is None:
            continue
        if not offline:
            try:  # the version as logged by its own stage, found by its exact alias
                run.use_artifact(f"{parent.name}:{version_alias(parent)}", type=parent.kind)
            except Exception:  # noqa: BLE001 - not in W&B yet: log it from its record
                run.use_artifact(build_artifact(parent), aliases=[version_alias(parent)])
            continue
        log_with_use = getattr(run, "_log_artifact", None)
        if log_with_use is None:
            log.info("W&B offline: cannot declare input %s with this wandb", parent.ref)
            continue
        try:
            log_with_use(build_artifact(parent), aliases=[version_alias(parent)],
                         use_after_commit=True)
        except TypeError:
            log.info("W&B offline: cannot declare input %s with this wandb", parent.ref)


def _push(run: Any, store: Store, artifact: Artifact, offline: bool) -> Artifact:
    """Declare the inputs and log the output on ``run``; returns the updated record."""
    _declare_inputs(run, store, artifact, offline)
    draft = build_artifact(artifact)
    aliases = sorted(set(artifact.aliases) | {"latest", version_alias(artifact)})
    logged = run.log_artifact(draft, aliases=aliases)
    if offline:
        return store.set_mirror(artifact, "offline", url=_run_dir(run))
    logged.wait(timeout=int(_timeout() * 4))
    return store.set_mirror(artifact, "synced", url=getattr(logged, "qualified_name", None))


def _run_dir(run: Any) -> str | None:
    """The offline run folder (what ``wandb sync`` takes)."""
    files = getattr(run, "dir", None)
    return os.path.dirname(files) if files and os.path.basename(files) == "files" else files


@contextmanager
def _run(target: Mapping[str, Any], artifact: Artifact, mode: str,
         api_key: str | None = None) -> Iterator[Any]:
    """The active wandb run of this process (a training backend's), or a short one of ours."""
    wandb = _import_wandb()
    active = getattr(wandb, "run", None)
    if active is not None:
        yield active
        return
    producer = artifact.producer
    settings = {
        "init_timeout": _timeout(),
        "console": "off",
        "silent": True,
        "x_disable_stats": True,
    }
    if target.get("base_url"):
        settings["base_url"] = target["base_url"]
    if api_key:
        settings["api_key"] = api_key
    run = wandb.init(
        project=target.get("project"),
        entity=target.get("entity"),
        job_type=producer.stage if producer else "nemotron",
        name=(producer.job_id if producer and producer.job_id else None),
        tags=list(target.get("tags") or []) or None,
        config={"nemotron_config_hash": artifact.config_hash},
        mode=mode,
        reinit="create_new",
        settings=wandb.Settings(**settings),
    )
    failed = True
    try:
        yield run
        failed = False
    finally:
        run.finish(exit_code=1 if failed else 0)


# ---------------------------------------------------------------------------- entry points


def mirror(store: Store, artifact: Artifact) -> Artifact:
    """Mirror one just-committed record. Raises on any W&B problem; ``Store`` catches it,
    warns and leaves the record pending."""
    if artifact.mirror is None:
        return artifact
    target = {**(store.wandb or {}), **artifact.mirror.target}
    mode = _mode(target)
    if mode == "disabled":
        return artifact
    offline = mode in ("offline", "dryrun")
    _import_wandb()
    if not offline:
        probe(_base_url(target))
    with _run(target, artifact, "offline" if offline else "online",
              api_key=(store.wandb or {}).get("api_key")) as run:
        return _push(run, store, artifact, offline=offline)


def sync(
    store: Store,
    *,
    target: Mapping[str, Any] | None = None,
    names: list[str] | None = None,
    dry_run: bool = False,
) -> SyncReport:
    """Push every complete record not yet in W&B (``pending`` or ``offline``), oldest first.

    ``target`` ({project, entity, base_url}) overrides each record's own target and also
    pushes records made without W&B configured. Online only; records of one job share a run.
    """
    report = SyncReport()
    candidates = [
        a for a in store.unsynced(include_unconfigured=target is not None)
        if not names or a.name in names
    ]
    work: list[tuple[dict[str, Any], Artifact]] = []
    for artifact in candidates:
        chosen = dict(target) if target else dict(artifact.mirror.target if artifact.mirror else {})
        if not chosen.get("project"):
            report.skipped.append((artifact.ref, "no W&B project recorded; pass --project"))
            continue
        chosen["mode"] = "online"
        work.append((chosen, artifact))
    report.planned = [a.ref for _, a in work]
    if dry_run or not work:
        return report
    _import_wandb()
    for base_url in sorted({_base_url(t) for t, _ in work}):
        try:
            probe(base_url)
        except MirrorUnavailable as err:
            raise UserError(
                f"{err}; {len(work)} record(s) stay un-synced",
                hint="run `nemotron artifacts sync` again from a machine that reaches W&B",
            ) from None

    def group_key(pair: tuple[dict[str, Any], Artifact]) -> str:
        chosen, artifact = pair
        job = artifact.producer.job_id if artifact.producer else None
        return json.dumps([chosen, job or f"#{artifact.id}"], sort_keys=True)

    for _, group in itertools.groupby(work, key=group_key):
        batch = list(group)
        chosen, first = batch[0]
        try:
            with _run(chosen, first, "online") as run:
                for _, artifact in batch:
                    _push(run, store, artifact, offline=False)
                    report.pushed.append(artifact.ref)
        except Exception as err:  # noqa: BLE001 - report and go on with the next job
            message = f"{type(err).__name__}: {err}"
            for _, artifact in batch:
                if artifact.ref not in report.pushed:
                    report.failed.append((artifact.ref, message))
                    store.set_mirror(artifact, "pending", error=message[:2000])
    return report
