"""The embedded lineage store: one SQLite file, always on, safe with many writers.

``Store.open(db)`` creates the schema on first use. Every write is one ``BEGIN IMMEDIATE``
transaction retried with backoff while the database is busy, so concurrent stages (also on other
nodes, when the file sits on a shared filesystem with POSIX locks) lose no record.

Journal mode: WAL on local disks. On network filesystems (NFS, Lustre, GPFS, ...) SQLite's WAL
index is shared memory that other hosts cannot see, so there the rollback journal is used, which
relies only on file locks. ``NEMOTRON_LINEAGE_JOURNAL=wal|delete`` overrides the choice.

A record is ``running`` from ``begin()`` until ``commit()`` (or ``failed``); only ``complete``
records are ever returned by ``resolve`` and ``find``, so a crashed stage never looks complete.
"""

from __future__ import annotations

import json
import logging
import os
import random
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from nemotron.errors import UserError
from nemotron.lineage import naming
from nemotron.lineage.records import (
    Artifact,
    InputRef,
    Mirror,
    Producer,
    is_uri,
    local_path,
    read_record_file,
    utcnow,
    version_number,
    write_record_file,
)

if TYPE_CHECKING:
    from nemotron.lineage.graph import LineageGraph

log = logging.getLogger("nemotron.lineage")

SCHEMA_VERSION = 1
_T = TypeVar("_T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS artifacts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,
    version INTEGER,
    identity TEXT NOT NULL,
    kind TEXT NOT NULL,
    path TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('running', 'complete', 'failed')),
    metadata TEXT NOT NULL DEFAULT '{}',
    producer TEXT NOT NULL,
    inputs TEXT NOT NULL DEFAULT '[]',
    config_hash TEXT,
    config TEXT,
    created_at TEXT NOT NULL,
    committed_at TEXT,
    error TEXT,
    mirror_status TEXT,
    mirror_target TEXT,
    mirror_error TEXT,
    mirror_at TEXT,
    mirror_url TEXT,
    UNIQUE (name, version),
    CHECK ((status = 'complete') = (version IS NOT NULL))
);
CREATE INDEX IF NOT EXISTS artifacts_identity ON artifacts (name, identity);
CREATE INDEX IF NOT EXISTS artifacts_kind ON artifacts (kind);
CREATE TABLE IF NOT EXISTS edges (
    child INTEGER NOT NULL REFERENCES artifacts (id) ON DELETE CASCADE,
    parent INTEGER NOT NULL REFERENCES artifacts (id),
    role TEXT NOT NULL,
    PRIMARY KEY (child, parent, role)
);
CREATE INDEX IF NOT EXISTS edges_parent ON edges (parent);
CREATE TABLE IF NOT EXISTS aliases (
    name TEXT NOT NULL,
    alias TEXT NOT NULL,
    artifact INTEGER NOT NULL REFERENCES artifacts (id),
    PRIMARY KEY (name, alias)
);
"""

_NETWORK_FS = {
    "nfs", "nfs4", "lustre", "gpfs", "beegfs", "cifs", "smb3", "smbfs", "ceph", "cephfs",
    "glusterfs", "fuse.glusterfs", "fuse.sshfs", "panfs", "wekafs", "9p", "fuse.juicefs",
    "afs", "orangefs", "pvfs2", "fuse.gcsfuse", "fuse.s3fs",
}

_LOCK_HINT = (
    "the lineage database needs a filesystem with working POSIX locks (Lustre: mount with "
    "'flock'; NFS: with lockd). Point `db` under [artifacts] in env.toml (or $NEMOTRON_HOME) "
    "at a local disk or such a filesystem"
)


# ---------------------------------------------------------------------------- locations


def filesystem_type(path: Path) -> str | None:
    """The type of the filesystem holding ``path`` (Linux /proc/self/mountinfo), or None."""
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return None
    target = os.path.realpath(path)
    best, best_type = "", None
    for line in lines:
        before, _, after = line.partition(" - ")
        fields = before.split()
        if len(fields) < 5 or not after:
            continue
        mount = fields[4].replace("\\040", " ")
        inside = target == mount or target.startswith(mount.rstrip("/") + "/")
        if inside and len(mount) >= len(best):
            best, best_type = mount, after.split()[0]
    return best_type


def _journal_mode(db: Path) -> str:
    wanted = os.environ.get("NEMOTRON_LINEAGE_JOURNAL", "").strip().lower()
    if wanted in ("wal", "delete"):
        return wanted
    if wanted:
        raise UserError(
            f"NEMOTRON_LINEAGE_JOURNAL={wanted!r} is not a journal mode",
            hint="use 'wal' (one host) or 'delete' (hosts sharing a network filesystem)",
        )
    return "delete" if filesystem_type(db.parent) in _NETWORK_FS else "wal"


def _is_busy(err: sqlite3.Error) -> bool:
    text = str(err).lower()
    return "locked" in text or "busy" in text


_ENVIRONMENT_ERRORS = (
    "locked", "busy", "disk i/o", "readonly", "read-only", "unable to open", "locking protocol",
    "disk is full", "not a database",
)


def _environmental(err: sqlite3.Error) -> bool:
    """Errors that come from the file or filesystem (the user can fix), not from our SQL."""
    text = str(err).lower().replace("read only", "readonly")
    return any(marker in text for marker in _ENVIRONMENT_ERRORS)


def _lock_error(db: Path, err: sqlite3.Error) -> UserError:
    text = str(err)
    if "readonly" in text.replace(" ", "").lower():
        return UserError(
            f"the lineage database {db} is read-only for you ({text})",
            hint="ask for write access to it and its folder, or point `db` under [artifacts] "
            "in env.toml elsewhere",
        )
    if _is_busy(err):
        return UserError(
            f"the lineage database {db} stayed locked ({text})",
            hint="another process may hold it for long, or " + _LOCK_HINT,
        )
    return UserError(f"cannot use the lineage database {db}: {text}", hint=_LOCK_HINT)


# ---------------------------------------------------------------------------- the store


class Store:
    """The lineage database. Open with ``Store.open(db)``; one instance per process/thread."""

    def __init__(self, db: Path, conn: sqlite3.Connection, wandb: Mapping[str, Any] | None,
                 busy_timeout: float, journal: str):
        self.db = db
        self.journal = journal
        self.busy_timeout = busy_timeout
        self.wandb = dict(wandb) if wandb else None
        self._conn = conn
        self._lock = threading.RLock()  # one connection: one transaction at a time

    # -- opening

    @classmethod
    def open(
        cls,
        db_path: str | Path,
        *,
        wandb: Mapping[str, Any] | Any | None = None,
        busy_timeout: float = 60.0,
    ) -> Store:
        """Open (and on first use create) the store at ``db_path``.

        ``wandb`` is the ``[wandb]`` section (project, entity, mode, base_url, tags) or None;
        when set, committed records are mirrored to W&B (never failing the stage).
        Raises UserError when the file cannot be locked or written.
        """
        db = Path(db_path).expanduser().absolute()
        try:
            db.parent.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise UserError(
                f"cannot create the folder of the lineage database {db}: {err.strerror}",
                hint="set `db` under [artifacts] in env.toml or $NEMOTRON_HOME to a writable place",
            ) from None
        journal = _journal_mode(db)
        if wandb is not None and not isinstance(wandb, Mapping):
            dump = getattr(wandb, "model_dump", None)
            wandb = dump() if callable(dump) else vars(wandb)
        try:
            conn = sqlite3.connect(
                str(db), timeout=busy_timeout, isolation_level=None, check_same_thread=False
            )
        except sqlite3.Error as err:
            raise _lock_error(db, err) from None
        store = cls(db, conn, wandb, busy_timeout, journal)
        try:
            store._prepare()
        except sqlite3.DatabaseError as err:
            conn.close()
            if "malformed" in str(err) or "not a database" in str(err):
                raise UserError(f"the lineage database {db} is damaged: {err}",
                                hint="restore it from a backup or move it away") from None
            if not _environmental(err):
                raise
            raise _lock_error(db, err) from None
        except BaseException:
            conn.close()
            raise
        return store

    def _prepare(self) -> None:
        conn = self._conn
        conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout * 1000)}")
        conn.execute("PRAGMA foreign_keys = ON")
        current = self._retry(lambda: conn.execute("PRAGMA journal_mode").fetchone()[0])
        if current.lower() != self.journal:
            mode = self._retry(
                lambda: conn.execute(f"PRAGMA journal_mode = {self.journal}").fetchone()[0]
            )
            if mode.lower() != self.journal:
                log.warning("lineage db %s: journal mode is %s, not %s", self.db, mode,
                            self.journal)
        conn.execute("PRAGMA synchronous = FULL")
        if self._schema_version() == SCHEMA_VERSION:
            return  # nothing to create: readers need no write access

        def create(c: sqlite3.Connection) -> None:
            # one statement at a time: executescript() would COMMIT the transaction
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    c.execute(statement)
            row = c.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
            if row is None:
                c.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
            elif int(row[0]) > SCHEMA_VERSION:
                raise UserError(
                    f"the lineage database {self.db} has schema {row[0]}, newer than this "
                    f"nemotron understands ({SCHEMA_VERSION})",
                    hint="upgrade nemotron",
                )

        self._write(create)  # also proves that the file can be locked for writing

    def _schema_version(self) -> int | None:
        query = "SELECT value FROM meta WHERE key = 'schema_version'"
        try:
            row = self._retry(lambda: self._conn.execute(query).fetchone())
        except sqlite3.OperationalError as err:
            if "no such table" in str(err):  # a new database
                return None
            raise
        return int(row[0]) if row else None

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- transactions

    def _retry(self, work: Callable[[], _T]) -> _T:
        deadline = time.monotonic() + self.busy_timeout
        delay = 0.02
        while True:
            with self._lock:
                try:
                    return work()
                except sqlite3.OperationalError as err:
                    if self._conn.in_transaction:
                        self._conn.execute("ROLLBACK")
                    if not _is_busy(err) or time.monotonic() > deadline:
                        raise
            time.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 2, 0.5)

    def _write(self, work: Callable[[sqlite3.Connection], _T]) -> _T:
        """Run ``work`` in one BEGIN IMMEDIATE transaction, retried while busy."""

        def attempt() -> _T:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                result = work(self._conn)
                self._conn.execute("COMMIT")
            except BaseException:
                if self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")
                raise
            return result

        return self._guarded(attempt)

    def _guarded(self, attempt):
        """Run ``attempt`` with retries; filesystem-side SQLite errors become user errors."""
        try:
            return self._retry(attempt)
        except sqlite3.OperationalError as err:
            if not _environmental(err):
                raise
            raise _lock_error(self.db, err) from None

    def _read(self, sql: str, args: Sequence[Any] = ()) -> list[dict[str, Any]]:
        def attempt() -> list[dict[str, Any]]:
            cursor = self._conn.execute(sql, args)
            names = [d[0] for d in cursor.description]
            return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]

        return self._guarded(attempt)

    # -- writing records

    def begin(
        self,
        *,
        name: str,
        kind: str,
        identity: str,
        path: str | Path,
        producer: Producer,
        inputs: Sequence[Artifact] | Mapping[str, Artifact] = (),
        config_hash: str | None = None,
        config: Mapping[str, Any] | None = None,
    ) -> Pending:
        """Start a ``running`` record for an output that is being produced.

        ``inputs`` are the artifacts used, as a list (role = ``data``/``model`` from the kind)
        or as ``{role: artifact}``; plain-path inputs are recorded by path.
        """
        from nemotron.lineage.kinds import check_kind

        naming.check_name(name)
        check_kind(kind)
        if not identity:
            raise ValueError("identity must be a non-empty content hash")
        path_text = str(path)
        if not is_uri(path_text):
            path_text = str(Path(path_text).expanduser().absolute())
        used = _input_refs(inputs)
        mirror_target = _mirror_target(self.wandb)
        row = {
            "name": name,
            "identity": identity,
            "kind": kind,
            "path": path_text,
            "status": "running",
            "producer": json.dumps(producer.to_dict()),
            "inputs": json.dumps([i.to_dict() for i in used]),
            "config_hash": config_hash,
            "config": json.dumps(dict(config), default=str) if config is not None else None,
            "created_at": utcnow(),
            "mirror_status": "pending" if mirror_target else None,
            "mirror_target": json.dumps(mirror_target) if mirror_target else None,
        }

        def insert(c: sqlite3.Connection) -> int:
            parents = []
            for used_input in used:
                if used_input.name is None:
                    continue
                found = c.execute(
                    "SELECT id FROM artifacts WHERE name = ? AND version = ? AND identity = ?"
                    " AND status = 'complete'",
                    (used_input.name, version_number(used_input.version), used_input.identity),
                ).fetchone()
                if found is None:
                    raise UserError(
                        f"input {used_input.ref} ({used_input.identity}) is not in {self.db}",
                        hint="inputs must be resolved from the same lineage database",
                    )
                parents.append((found[0], used_input.role))
            cursor = c.execute(
                f"INSERT INTO artifacts ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})",
                tuple(row.values()),
            )
            child = cursor.lastrowid
            c.executemany(
                "INSERT OR IGNORE INTO edges (child, parent, role) VALUES (?, ?, ?)",
                [(child, parent, role) for parent, role in parents],
            )
            return child

        record_id = self._write(insert)
        return Pending(self, record_id, name=name, kind=kind, identity=identity, path=path_text,
                       producer=producer)

    def _commit(self, pending: Pending, metadata: Mapping[str, Any] | None,
                aliases: Iterable[str]) -> Artifact:
        from nemotron.lineage.kinds import validate_metadata

        checked = validate_metadata(pending.kind, dict(metadata or {}))
        local = local_path(pending.path)
        if local is not None and not local.exists():
            raise FileNotFoundError(
                f"cannot commit {pending.name}: {pending.path} does not exist; move the files "
                "into place first (commit marks the record complete)"
            )
        aliases = [_check_alias(a) for a in aliases]
        ended = utcnow()
        producer = json.dumps({**pending.producer.to_dict(), "ended_at": ended})

        def commit(c: sqlite3.Connection) -> int:
            state = c.execute("SELECT status FROM artifacts WHERE id = ?", (pending.id,)).fetchone()
            if state is None or state[0] != "running":
                raise RuntimeError(
                    f"{pending.name} record {pending.id} is {state[0] if state else 'gone'}, "
                    "not running; it cannot be committed"
                )
            same = c.execute(
                "SELECT id FROM artifacts WHERE name = ? AND identity = ? AND status = 'complete'",
                (pending.name, pending.identity),
            ).fetchone()
            if same is not None:  # content-addressed: a forced redo of an existing output
                c.execute("DELETE FROM artifacts WHERE id = ?", (pending.id,))
                c.execute(  # the files now there are this run's: so is the record
                    "UPDATE artifacts SET metadata = ?, producer = ?, committed_at = ? "
                    "WHERE id = ?", (json.dumps(checked), producer, ended, same[0]))
                _set_aliases(c, pending.name, same[0], aliases)
                return same[0]
            version = c.execute(
                "SELECT COALESCE(MAX(version) + 1, 0) FROM artifacts WHERE name = ?",
                (pending.name,),
            ).fetchone()[0]
            c.execute(
                "UPDATE artifacts SET status = 'complete', version = ?, metadata = ?, "
                "producer = ?, committed_at = ? WHERE id = ?",
                (version, json.dumps(checked), producer, ended, pending.id),
            )
            _set_aliases(c, pending.name, pending.id, ["latest", *aliases])
            return pending.id

        # artifact.json only after the transaction committed: a failed commit leaves nothing
        # beside the files that looks complete (a forced redo rewrites it, as a first run does)
        artifact = self._get(self._write(commit))
        write_record_file(artifact)
        if artifact.mirror is not None and artifact.mirror.status == "pending":
            artifact = self._mirror_now(artifact)
        return artifact

    def _fail(self, pending: Pending, reason: str) -> None:
        producer = json.dumps({**pending.producer.to_dict(), "ended_at": utcnow()})
        self._write(lambda c: c.execute(
            "UPDATE artifacts SET status = 'failed', error = ?, producer = ? "
            "WHERE id = ? AND status = 'running'",
            (reason, producer, pending.id),
        ))

    def add_alias(self, ref: str, alias: str) -> Artifact:
        """Point ``alias`` (not ``latest``, which follows the newest version) at ``ref``."""
        _check_alias(alias)
        artifact = self.resolve(ref)
        if not artifact.registered:
            raise UserError(f"{ref} is a path, not a registered artifact",
                            hint="register it first: nemotron artifacts import PATH ...")
        self._write(lambda c: _set_aliases(c, artifact.name, artifact.id, [alias]))
        return self._get(artifact.id)

    def import_path(
        self,
        path: str | Path,
        *,
        kind: str,
        name: str,
        metadata: Mapping[str, Any] | None = None,
        producer: Producer | None = None,
        aliases: Iterable[str] = (),
    ) -> Artifact:
        """Register existing files (data, a converted checkpoint...) as a new version of
        ``name``. Metadata is read from the files where possible, then ``metadata`` overrides."""
        from nemotron.lineage.hashing import identity
        from nemotron.lineage.kinds import MetadataError, check_kind, infer_metadata

        try:
            check_kind(kind)
        except MetadataError as err:
            raise UserError(str(err), hint="pass --kind with one of the kinds listed") from None
        local = Path(path).expanduser().absolute() if not is_uri(str(path)) else None
        if local is not None and not local.exists():
            raise UserError(f"nothing at {local}", hint="pass the folder or file to register")
        location = str(local) if local is not None else str(path)
        merged = {**(infer_metadata(kind, local) if local else {}), **dict(metadata or {})}
        if kind == "model":
            merged.setdefault("stage", "import")
        pending = self.begin(
            name=name, kind=kind, path=location,
            identity=identity(kind=kind, path=location, fingerprint=_fingerprint(local)),
            producer=producer or Producer.current("import"),
        )
        try:
            return pending.commit(merged, aliases=aliases)
        except MetadataError as err:
            pending.fail(str(err))
            raise UserError(str(err), hint="add or fix fields with --metadata key=value") from None
        except BaseException as err:
            pending.fail(repr(err))
            raise

    # -- reading records

    def _get(self, record_id: int, conn: sqlite3.Connection | None = None) -> Artifact:
        if conn is not None:
            cursor = conn.execute("SELECT * FROM artifacts WHERE id = ?", (record_id,))
            names = [d[0] for d in cursor.description]
            rows = [dict(zip(names, r, strict=True)) for r in cursor.fetchall()]
            alias_rows = conn.execute(
                "SELECT alias FROM aliases WHERE artifact = ? ORDER BY alias", (record_id,)
            ).fetchall()
            return _artifact(rows[0], tuple(a[0] for a in alias_rows))
        return self._artifacts("id = ?", (record_id,))[0]

    def _artifacts(self, where: str, args: Sequence[Any] = (), order: str = "id") -> list[Artifact]:
        rows = self._read(f"SELECT * FROM artifacts WHERE {where} ORDER BY {order}", args)
        if not rows:
            return []
        aliases: dict[int, list[str]] = {}
        ids = [r["id"] for r in rows]
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            for alias_row in self._read(
                f"SELECT artifact, alias FROM aliases WHERE artifact IN "
                f"({', '.join('?' * len(chunk))}) ORDER BY alias",
                chunk,
            ):
                aliases.setdefault(alias_row["artifact"], []).append(alias_row["alias"])
        return [_artifact(r, tuple(aliases.get(r["id"], ()))) for r in rows]

    def find(self, name: str, identity: str) -> Artifact | None:
        """The complete artifact ``name`` with exactly this identity, or None."""
        found = self._artifacts(
            "name = ? AND identity = ? AND status = 'complete'", (name, identity)
        )
        return found[0] if found else None

    def get(self, name: str, version: str | int) -> Artifact | None:
        """The complete version (``"v3"`` or 3) of ``name``, or None."""
        found = self._artifacts(
            "name = ? AND version = ? AND status = 'complete'", (name, version_number(version))
        )
        return found[0] if found else None

    def resolve(self, ref: str | Path, *, kind: str | None = None,
                role: str | None = None) -> Artifact:
        """``NAME``, ``NAME:vN``, ``NAME:latest``, ``NAME:<alias>``, ``NAME@<identity>`` or a
        path -> the artifact. Only complete records resolve. ``kind`` checks the kind; ``role``
        (data, model...) only words the hint ("or pass run.<role>=PATH")."""
        text = str(ref).strip()
        if isinstance(ref, Path) or naming.looks_like_path(text):
            return self._path_artifact(text, kind, role)
        try:
            parsed = naming.parse_ref(text)
        except ValueError as err:
            raise UserError(
                f"bad artifact reference: {err}",
                hint="use NAME, NAME:v3, NAME:latest, NAME:<alias>, or a path",
            ) from None
        found = self._lookup(parsed)
        if found is None:
            raise self._missing(parsed, role or naming.default_role(parsed.name, kind))
        if kind is not None and found.kind != kind:
            raise UserError(
                f"{found.ref} is a {found.kind} artifact, not {kind}",
                hint=f"pass a {kind} artifact (see `nemotron artifacts list --kind {kind}`)",
            )
        return found

    def resolve_pin(self, pin: Mapping[str, Any]) -> Artifact:
        """Re-open an input pinned in job.yaml (``Artifact.pin()``): the exact same version."""
        if not pin.get("name"):
            return self._path_artifact(str(pin["path"]), pin.get("kind"), None)
        found = self.get(pin["name"], pin["version"])
        if found is None or (pin.get("identity") and found.identity != pin["identity"]):
            raise UserError(
                f"the pinned input {pin['name']}:{pin['version']} ({pin.get('identity')}) "
                f"is not in {self.db}",
                hint="the job must run against the lineage database it was planned with",
            )
        return found

    def _lookup(self, parsed: naming.Ref) -> Artifact | None:
        if parsed.version is not None:
            return self.get(parsed.name, parsed.version)
        if parsed.identity is not None:
            found = self._artifacts(
                "name = ? AND identity LIKE ? AND status = 'complete'",
                (parsed.name, parsed.identity + "%"),
            )
            if len(found) > 1:
                raise UserError(f"{parsed} matches {len(found)} versions",
                                hint="give more characters of the identity")
            return found[0] if found else None
        alias = parsed.alias or "latest"
        found = self._artifacts(
            "id = (SELECT artifact FROM aliases WHERE name = ? AND alias = ?)"
            " AND status = 'complete'",
            (parsed.name, alias),
        )
        return found[0] if found else None

    def _missing(self, parsed: naming.Ref, role: str) -> UserError:
        counts = {
            r["status"]: r["n"]
            for r in self._read(
                "SELECT status, COUNT(*) AS n FROM artifacts WHERE name = ? GROUP BY status",
                (parsed.name,),
            )
        }
        command = naming.produce_command(parsed.name)
        produce = f"produce it with `{command}` or pass" if command else "import it with " \
            f"`nemotron artifacts import PATH --name {parsed.name} --kind K` or pass"
        hint = f"{produce} run.{role}=PATH"
        if counts.get("complete"):
            versions = [str(a.version) for a in self.versions(parsed.name)]
            aliases = sorted({a for art in self.versions(parsed.name) for a in art.aliases})
            return UserError(
                f"no version {parsed} of {parsed.name}; versions: {', '.join(versions)}; "
                f"aliases: {', '.join(aliases)}",
                hint=f"pick one of those, or {hint}",
            )
        others = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
        detail = f" (only {others}: those never resolve)" if others else ""
        return UserError(f"no artifact {parsed.name}{detail}", hint=hint)

    def _path_artifact(self, path: str, kind: str | None, role: str | None) -> Artifact:
        location = path if is_uri(path) else str(Path(path).expanduser().absolute())
        local = local_path(location)
        if local is not None and not local.exists():
            raise UserError(
                f"nothing at {location}",
                hint=f"pass an existing path or an artifact name as run.{role or 'data'}=...",
            )
        recorded = read_record_file(location)
        if recorded is not None and recorded.name and recorded.identity:
            registered = self.find(recorded.name, recorded.identity)
            if registered is not None:
                return registered
        metadata = recorded.metadata if recorded is not None else {}
        found_kind = recorded.kind if recorded is not None else None
        if kind is not None and found_kind not in (None, kind):
            raise UserError(f"{location} holds a {found_kind} artifact, not {kind}",
                            hint=f"pass a {kind} path or artifact name")
        return Artifact(path=location, kind=found_kind or kind, metadata=metadata)

    def versions(self, name: str) -> list[Artifact]:
        """Complete versions of ``name``, oldest first."""
        return self._artifacts("name = ? AND status = 'complete'", (name,), order="version")

    def list(
        self,
        *,
        family: str | None = None,
        kind: str | None = None,
        name: str | None = None,
        include_incomplete: bool = False,
    ) -> list[Artifact]:
        """Artifacts by name, newest version first; running/failed ones only on request."""
        where, args = ["1 = 1"], []
        if not include_incomplete:
            where.append("status = 'complete'")
        if family:
            where.append("(name = ? OR name LIKE ? ESCAPE '\\')")
            args += [family, family.replace("_", "\\_").replace("%", "\\%") + "-%"]
        if kind:
            where.append("kind = ?")
            args.append(kind)
        if name:
            where.append("name = ?")
            args.append(name)
        return self._artifacts(
            " AND ".join(where), args, order="name, version IS NULL DESC, version DESC, id DESC"
        )

    def lineage(self, ref: str, depth: int | None = None) -> LineageGraph:
        """The graph around ``ref``: everything upstream (inputs of inputs...) and downstream
        (complete artifacts made from it), to ``depth`` hops each way."""
        from nemotron.lineage.graph import LineageGraph

        root = self.resolve(ref)
        if not root.registered:
            raise UserError(f"{ref} is a path, not a registered artifact",
                            hint="lineage is recorded for registered artifacts only")
        nodes = {root.id: root}
        edges: set[tuple[int, int, str]] = set()
        for direction in ("up", "down"):
            frontier, hops = [root.id], 0
            while frontier and (depth is None or hops < depth):
                hops += 1
                marks = ", ".join("?" * len(frontier))
                if direction == "up":
                    rows = self._read(
                        f"SELECT child, parent, role FROM edges WHERE child IN ({marks})", frontier
                    )
                    fresh = [r["parent"] for r in rows]
                else:
                    rows = self._read(
                        "SELECT e.child, e.parent, e.role FROM edges e JOIN artifacts a "
                        f"ON a.id = e.child WHERE e.parent IN ({marks}) "
                        "AND a.status = 'complete'",
                        frontier,
                    )
                    fresh = [r["child"] for r in rows]
                edges.update((r["child"], r["parent"], r["role"]) for r in rows)
                frontier = [i for i in dict.fromkeys(fresh) if i not in nodes]
                for artifact in self._artifacts(
                    f"id IN ({', '.join('?' * len(frontier))})", frontier
                ) if frontier else []:
                    nodes[artifact.id] = artifact
        return LineageGraph(root=root.id, nodes=nodes, edges=sorted(edges))

    # -- W&B mirror bookkeeping

    def set_mirror(self, artifact: Artifact, status: str, *, error: str | None = None,
                   url: str | None = None, target: Mapping[str, Any] | None = None) -> Artifact:
        """Record where the W&B copy of ``artifact`` stands (used by the mirror)."""
        if status not in ("pending", "offline", "synced"):
            raise ValueError(f"unknown mirror status {status!r}")
        columns = "mirror_status = ?, mirror_error = ?, mirror_url = ?, mirror_at = ?"
        args: list[Any] = [status, error, url, utcnow()]
        if target is not None:
            columns += ", mirror_target = ?"
            args.append(json.dumps(_mirror_target(target)))
        self._write(lambda c: c.execute(
            f"UPDATE artifacts SET {columns} WHERE id = ?", (*args, artifact.id)
        ))
        return self._get(artifact.id)

    def unsynced(self, *, include_unconfigured: bool = False) -> list[Artifact]:
        """Complete records not (yet) in W&B, oldest first (inputs before their outputs)."""
        states = "mirror_status IN ('pending', 'offline')"
        if include_unconfigured:
            states = f"({states} OR mirror_status IS NULL)"
        return self._artifacts(f"status = 'complete' AND {states}", (), order="committed_at, id")

    def _mirror_now(self, artifact: Artifact) -> Artifact:
        """Mirror one committed record; any failure is a warning and leaves it pending."""
        try:
            from nemotron.lineage import wandb_mirror

            return wandb_mirror.mirror(self, artifact)
        except Exception as err:  # noqa: BLE001 - W&B must never fail a stage
            message = f"{type(err).__name__}: {err}"
            log.warning(
                "W&B mirror of %s failed (%s); the local record stands, push it later with "
                "`nemotron artifacts sync`", artifact.ref, message,
            )
            try:
                return self.set_mirror(artifact, "pending", error=message[:2000])
            except Exception:  # noqa: BLE001
                return artifact


class Pending:
    """A ``running`` record: ``commit(metadata)`` completes it, ``fail(reason)`` marks it failed.

    As a context manager, an exception (or leaving without commit) marks it failed.
    """

    def __init__(self, store: Store, record_id: int, *, name: str, kind: str, identity: str,
                 path: str, producer: Producer):
        self.store = store
        self.id = record_id
        self.name = name
        self.kind = kind
        self.identity = identity
        self.path = path
        self.producer = producer
        self.artifact: Artifact | None = None
        self.failed = False

    def commit(self, metadata: Mapping[str, Any] | None = None, *,
               aliases: Iterable[str] = ()) -> Artifact:
        """Validate ``metadata`` for the kind, assign the next version, move ``latest`` (and
        ``aliases``), write ``artifact.json`` beside the files; then mirror to W&B if set."""
        self.artifact = self.store._commit(self, metadata, aliases)
        return self.artifact

    def fail(self, reason: str) -> None:
        self.store._fail(self, reason)
        self.failed = True

    def __enter__(self) -> Pending:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: object) -> None:
        if self.artifact is None and not self.failed:
            self.fail(repr(exc) if exc is not None else "left without commit()")


# ---------------------------------------------------------------------------- helpers


def _artifact(row: Mapping[str, Any], aliases: tuple[str, ...]) -> Artifact:
    mirror = None
    if row["mirror_status"]:
        mirror = Mirror(
            status=row["mirror_status"],
            target=json.loads(row["mirror_target"] or "{}"),
            error=row["mirror_error"],
            at=row["mirror_at"],
            url=row["mirror_url"],
        )
    return Artifact(
        id=row["id"],
        name=row["name"],
        version=f"v{row['version']}" if row["version"] is not None else None,
        identity=row["identity"],
        kind=row["kind"],
        path=row["path"],
        status=row["status"],
        metadata=json.loads(row["metadata"] or "{}"),
        producer=Producer.from_dict(json.loads(row["producer"])),
        inputs=tuple(InputRef.from_dict(i) for i in json.loads(row["inputs"] or "[]")),
        config_hash=row["config_hash"],
        config=json.loads(row["config"]) if row["config"] else None,
        aliases=aliases,
        created_at=row["created_at"],
        committed_at=row["committed_at"],
        error=row["error"],
        mirror=mirror,
    )


def _input_refs(inputs: Sequence[Artifact] | Mapping[str, Artifact]) -> list[InputRef]:
    pairs = list(inputs.items()) if isinstance(inputs, Mapping) else [(None, a) for a in inputs]
    refs = []
    for role, artifact in pairs:
        if not isinstance(artifact, Artifact):
            raise TypeError(f"inputs must be Artifact objects (from resolve), not {artifact!r}")
        if artifact.registered and artifact.status != "complete":
            raise ValueError(f"input {artifact.ref} is {artifact.status}, not complete")
        refs.append(InputRef(
            role=role or naming.default_role(artifact.name, artifact.kind),
            path=artifact.path,
            name=artifact.name if artifact.registered else None,
            version=artifact.version if artifact.registered else None,
            identity=artifact.identity if artifact.registered else None,
            kind=artifact.kind,
        ))
    return refs


def _mirror_target(wandb: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The W&B settings worth keeping with a record (never the API key)."""
    if not wandb or not wandb.get("project"):
        return None
    if wandb.get("mode") == "disabled":
        return None
    keep = ("project", "entity", "mode", "base_url", "tags")
    return {k: wandb[k] for k in keep if wandb.get(k) not in (None, [], "")}


def _check_alias(alias: str) -> str:
    if alias == "latest":
        raise UserError("'latest' always points at the newest version",
                        hint="pick another alias, e.g. 'best' or 'release'")
    if not naming.ALIAS_RE.match(alias) or naming.parse_ref(f"x:{alias}").version is not None:
        raise UserError(f"bad alias {alias!r}",
                        hint="start with a letter; letters, digits, '.', '_', '-'; not vN")
    return alias


def _set_aliases(c: sqlite3.Connection, name: str, record_id: int, aliases: Iterable[str]) -> None:
    c.executemany(
        "INSERT INTO aliases (name, alias, artifact) VALUES (?, ?, ?) "
        "ON CONFLICT (name, alias) DO UPDATE SET artifact = excluded.artifact",
        [(name, alias, record_id) for alias in aliases],
    )


def _fingerprint(local: Path | None) -> list[Any]:
    """A cheap stand-in for a content hash of existing files: relative names, sizes, mtimes."""
    if local is None:
        return []
    if local.is_file():
        stat = local.stat()
        return [[local.name, stat.st_size, int(stat.st_mtime)]]
    entries = []
    for folder, _, files in os.walk(local):
        for file in files:
            full = Path(folder) / file
            if full.name.endswith(".artifact.json") or full.name == "artifact.json":
                continue
            stat = full.stat()
            entries.append([str(full.relative_to(local)), stat.st_size, int(stat.st_mtime)])
    return sorted(entries)
