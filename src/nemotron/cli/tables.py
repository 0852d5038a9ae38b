"""Tables whose identifiers stay whole at any terminal width.

Job ids, artifact names with versions and Slurm ids are what a user copies into the next
command, so their columns never wrap or get cut; the other columns fold first. A terminal too
narrow for even the identifiers lets the line run long rather than cut them.
"""

from __future__ import annotations

from typing import Any


def new_table(columns: list[str], identifiers: dict[str, list[str]], **options: Any) -> Any:
    """A rich ``Table`` with ``columns``; those named in ``identifiers`` get the width of their
    longest value (plain text, without markup) and never wrap."""
    from rich.table import Table
    from rich.text import Text

    table = Table(**options)
    for column in columns:
        if column in identifiers:
            widest = max([len(column), *(Text.from_markup(v).cell_len
                                         for v in identifiers[column])])
            table.add_column(column, no_wrap=True, min_width=widest, overflow="ignore")
        else:
            table.add_column(column, overflow="fold")
    return table
