from __future__ import annotations

import logging
from pathlib import Path

import pytest

from nemotron.lineage import Store


@pytest.fixture
def root(tmp_path: Path) -> Path:
    folder = tmp_path / "artifacts"
    folder.mkdir()
    return folder


@pytest.fixture
def store(root: Path):
    with Store.open(root / "lineage.db") as opened:
        yield opened


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No test may touch ~/.nemotron or a real W&B setting of the machine."""
    monkeypatch.setenv("NEMOTRON_HOME", str(tmp_path / "home"))
    for variable in ("WANDB_MODE", "WANDB_BASE_URL", "WANDB_API_KEY", "WANDB_DIR",
                     "NEMOTRON_LINEAGE_JOURNAL", "NEMOTRON_WANDB_PROBE"):
        monkeypatch.delenv(variable, raising=False)
    logging.getLogger("nemotron.lineage").setLevel(logging.INFO)
