"""A prep worker process: ``python -m nemotron.data.worker <result-fd>``.

Reads one JSON job per line on stdin (task, unit, shared args, work dir, key), runs it with
``engine.run_one`` and answers on the file descriptor it was given: progress lines while it
works, then ``{"receipt": ...}`` or ``{"error": ...}``. Exits at end of input, and dies with its
parent (``PR_SET_PDEATHSIG``), so a killed prep leaves no writer behind.
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback


def die_with_parent(signum: int, parent: int | None) -> None:
    """Ask Linux to send ``signum`` to this process when its parent dies (PR_SET_PDEATHSIG);
    exit at once if ``parent`` (the pid that started us) is gone already. A no-op elsewhere."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signum)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    if parent and os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)


def main(argv: list[str]) -> int:
    import signal

    parent = os.environ.get("NEMOTRON_PREP_PARENT")
    die_with_parent(signal.SIGKILL, int(parent) if parent else None)
    from nemotron.data.engine import Unit, run_one
    from nemotron.errors import UserError

    out = os.fdopen(int(argv[0]), "wb", buffering=0)

    def send(message: dict) -> None:
        out.write((json.dumps(message) + "\n").encode("utf-8"))

    pending = [0, 0, 0]
    last = [time.monotonic()]

    def report(nbytes: int, docs: int, tokens: int) -> None:
        pending[0] += nbytes
        pending[1] += docs
        pending[2] += tokens
        now = time.monotonic()
        if now - last[0] >= 0.2:
            send({"progress": pending[:]})
            pending[:] = [0, 0, 0]
            last[0] = now

    for line in sys.stdin.buffer:
        job = json.loads(line)
        try:
            receipt = run_one(
                job["task"],
                Unit.from_json(job["unit"]),
                job["shared"],
                job["work_dir"],
                job["key"],
                report,
            )
        except UserError as exc:
            send({"error": str(exc), "user_error": [exc.message, exc.hint]})
            return 1
        except BaseException:
            send({"error": traceback.format_exc()})
            return 1
        if "user_error" in receipt:
            send({"error": receipt["user_error"][0], "user_error": receipt["user_error"]})
            return 1
        if any(pending):
            send({"progress": pending[:]})
            pending[:] = [0, 0, 0]
        send({"receipt": receipt})
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
