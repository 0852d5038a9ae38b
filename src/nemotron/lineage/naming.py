"""Artifact names, references and the command that produces a name.

Names follow ``<family>-<stage>-<kind>[-<config>]`` where kind is ``data``, ``model`` or
``results`` and the config part is left out for the ``default`` config::

    nano3-pretrain-data-tiny   nano3-sft-model   super3-eval-results-tiny

A reference is ``NAME``, ``NAME:vN``, ``NAME:latest``, ``NAME:<alias>`` or ``NAME@<identity
prefix>``; anything that looks like a filesystem path or URI is a path instead.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

KIND_WORDS = ("data", "model", "results")
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
ALIAS_RE = re.compile(r"^[A-Za-z][A-Za-z0-9._-]{0,63}$")
_VERSION_RE = re.compile(r"^v(\d+)$")
_IDENTITY_RE = re.compile(r"^[0-9a-f]{6,64}$")


@dataclass(frozen=True)
class NameParts:
    family: str
    stage: str
    kind_word: str  # data | model | results
    config: str | None


@dataclass(frozen=True)
class Ref:
    """A parsed reference; at most one of ``version``, ``alias``, ``identity`` is set."""

    name: str
    version: int | None = None
    alias: str | None = None
    identity: str | None = None

    def __str__(self) -> str:
        if self.version is not None:
            return f"{self.name}:v{self.version}"
        if self.alias is not None:
            return f"{self.name}:{self.alias}"
        if self.identity is not None:
            return f"{self.name}@{self.identity}"
        return self.name


def artifact_name(family: str, stage: str, kind_word: str, config: str | None = None) -> str:
    """``artifact_name("nano3", "sft", "data", "tiny") == "nano3-sft-data-tiny"``."""
    if kind_word not in KIND_WORDS:
        raise ValueError(f"kind word must be one of {KIND_WORDS}, not {kind_word!r}")
    parts = [family, stage, kind_word]
    if config and config != "default":
        parts.append(config)
    name = "-".join(parts)
    check_name(name)
    return name


def parse_name(name: str) -> NameParts | None:
    """Split a name that follows the pattern; None for names that do not (e.g. imports)."""
    tokens = name.split("-")
    for at in range(2, len(tokens)):
        if tokens[at] in KIND_WORDS:
            config = "-".join(tokens[at + 1 :]) or None
            return NameParts(tokens[0], "-".join(tokens[1:at]), tokens[at], config)
    return None


def produce_command(name: str) -> str | None:
    """The command that produces ``name``, e.g. ``nemotron nano3 data prep sft -c tiny``."""
    parts = parse_name(name)
    if parts is None:
        return None
    if parts.kind_word == "data":
        command = f"nemotron {parts.family} data prep {parts.stage}"
    else:
        command = f"nemotron {parts.family} {parts.stage}"
    return command + (f" -c {parts.config}" if parts.config else "")


def default_role(name: str | None, kind: str | None = None) -> str:
    """The run.<role> key an input of this name or kind is usually passed as."""
    parts = parse_name(name) if name else None
    if parts is not None:
        return parts.kind_word
    if kind:
        return "model" if kind == "model" else "data"
    return "data"


def check_name(name: str) -> str:
    if not NAME_RE.match(name):
        raise ValueError(
            f"invalid artifact name {name!r}: use letters, digits, '.', '_' and '-' "
            "(at most 128 characters), starting with a letter or digit"
        )
    return name


def looks_like_path(ref: str) -> bool:
    """Paths start with ``/``, ``.`` or ``~``, carry a URI scheme, or exist on disk."""
    return (
        ref.startswith(("/", ".", "~"))
        or "://" in ref
        or os.sep in ref
        or os.path.exists(ref)
    )


def parse_ref(ref: str) -> Ref:
    """Parse ``NAME[:vN|:latest|:ALIAS|@IDENTITY]``; raises ValueError on a malformed one."""
    ref = ref.strip()
    if "@" in ref:
        name, _, ident = ref.partition("@")
        if not _IDENTITY_RE.match(ident):
            raise ValueError(f"{ref!r}: an identity is 6 to 64 lowercase hex characters")
        return Ref(check_name(name), identity=ident)
    name, sep, tag = ref.partition(":")
    check_name(name)
    if not sep or tag == "":
        return Ref(name, alias="latest") if sep else Ref(name)
    version = _VERSION_RE.match(tag)
    if version:
        return Ref(name, version=int(version.group(1)))
    if not ALIAS_RE.match(tag):
        raise ValueError(f"{ref!r}: a version is vN, or an alias of letters, digits, '.', '_', '-'")
    return Ref(name, alias=tag)
