"""Fixtures that run the real `nemotron` entry point in-process and capture what a user sees."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from nemotron.cli.main import main

REPO = Path(__file__).resolve().parents[1]


@click.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True,
                                 "help_option_names": []})
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def _shim(args):
    main(list(args))


@dataclass
class Result:
    exit_code: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    """An isolated NEMOTRON_HOME and working directory (no env.toml above it)."""
    h = tmp_path / "home"
    monkeypatch.setenv("NEMOTRON_HOME", str(h))
    monkeypatch.delenv("NEMOTRON_ENV_FILE", raising=False)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    return h


@pytest.fixture
def cli(home):
    def invoke(*args: str, env: dict[str, str] | None = None) -> Result:
        runner = CliRunner()
        result = runner.invoke(_shim, list(args), env={"COLUMNS": "200", **(env or {})},
                               catch_exceptions=False)
        return Result(result.exit_code, result.stdout, result.stderr)

    return invoke


@pytest.fixture
def env_toml(tmp_path):
    def write(text: str, name: str = "env.toml") -> Path:
        path = tmp_path / name
        path.write_text(text)
        return path

    return write


def shipped_configs():
    from nemotron.recipes import discover

    for family in discover().values():
        for stage in family.stages.values():
            for config in stage.configs():
                yield pytest.param(family.name, stage.name, config,
                                   id=f"{family.name}-{stage.name}-{config}")


os.environ.setdefault("HF_HUB_OFFLINE", "1")


def weights_digest(folder) -> str:
    """The SHA-256 of a model artifact's weights file: equal digests, identical weights."""
    return hashlib.sha256((Path(folder) / "model.safetensors").read_bytes()).hexdigest()
