"""The one way the CLI makes a rich console: no emoji codes, no highlighting.

Our own text may use rich markup; text that came from the user (keys, values, names, paths,
error messages) is escaped or printed with ``markup=False``, and emoji codes such as
``:smile:`` are never replaced, so ``run.data=a:b:c`` prints as typed.
"""

from __future__ import annotations

from typing import Any


def make_console(**options: Any):
    from rich.console import Console

    return Console(**{"highlight": False, "emoji": False, **options})
