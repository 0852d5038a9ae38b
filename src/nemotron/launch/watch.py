"""``python -m nemotron.launch.watch RECORD -- CMD...``: run CMD and record how it ended.

Used for detached local jobs, so ``nemotron jobs status`` knows the exit code after the
launching terminal is gone.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

from nemotron.launch.records import _now, load_record


def main(argv: list[str]) -> int:
    record_path, sep, *cmd = argv
    if sep != "--" or not cmd:
        print("usage: python -m nemotron.launch.watch RECORD -- CMD...", file=sys.stderr)
        return 2
    proc = subprocess.Popen(cmd)

    def forward(signum, _frame):
        proc.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    code = proc.wait()
    record = load_record(Path(record_path))
    if record.state != "CANCELLED":
        record.update(state="SUCCEEDED" if code == 0 else "FAILED", exit_code=code, ended=_now())
    else:
        record.update(exit_code=code)
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
