"""nemotron.lineage: typed, versioned artifacts in an embedded SQLite store, mirrored to W&B.

Stages register every output here (and nothing else writes lineage)::

    from nemotron.lineage import Producer, Store, identity

    store = Store.open(db)                               # [artifacts] db from env.toml
    data = store.resolve("nano3-sft-data-tiny:v1")       # or :latest, :<alias>, a path
    out = identity(family="nano3", stage="sft", config=cfg, inputs=[data.identity])
    with store.begin(name="nano3-sft-model-tiny", kind="model", identity=out, path=where,
                     producer=Producer.current("sft", job_id), inputs={"data": data},
                     config_hash=config_hash(cfg), config=cfg) as pending:
        ...                                              # train into where
        model = pending.commit({"format": "hf", "stage": "sft", "step": 100})

Only stdlib and pydantic are imported here (the W&B mirror imports wandb when it runs).
"""

from nemotron.lineage.hashing import canonical_json, config_hash, identity, output_identity
from nemotron.lineage.kinds import KINDS, MetadataError, headline, validate_metadata
from nemotron.lineage.locations import artifact_path, store_paths
from nemotron.lineage.naming import artifact_name, parse_name, parse_ref, produce_command
from nemotron.lineage.records import Artifact, InputRef, Mirror, Producer
from nemotron.lineage.store import Pending, Store

__all__ = [
    "KINDS",
    "Artifact",
    "InputRef",
    "MetadataError",
    "Mirror",
    "Pending",
    "Producer",
    "Store",
    "artifact_name",
    "artifact_path",
    "canonical_json",
    "config_hash",
    "headline",
    "identity",
    "output_identity",
    "store_paths",
    "parse_name",
    "parse_ref",
    "produce_command",
    "validate_metadata",
]
