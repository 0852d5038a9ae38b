"""Progress and summaries work without rich (the node side may not have it)."""

from __future__ import annotations

import logging
import sys

from nemotron.data.progress import Progress, print_table


def test_plain_progress_and_table_without_rich(monkeypatch, capsys):
    for name in [m for m in sys.modules if m == "rich" or m.startswith("rich.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "rich", None)  # import rich -> ImportError
    monkeypatch.setattr(logging.getLogger(), "handlers", [])
    progress = Progress("pretrain prep", enabled=True, log_every_s=0)
    progress.start(1000, done_units=2, units=5)
    progress.update(250, 10, 4000)
    progress.update(250, 10, 4000)
    progress.close()
    print_table("pretrain prep", ["dataset", "split", "docs"], [["web", "train", "20"]], True)
    err = capsys.readouterr().err
    assert "2 of 5 units already done" in err
    assert "pretrain prep:  50% 500B of 1kB" in err and "docs/s" in err and "ETA" in err
    assert "dataset  split  docs\nweb      train  20" in err
    assert progress.steady_tokens_per_s() > 0
