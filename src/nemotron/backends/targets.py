"""Which pinned library version a cluster stage targets: from ``run.container_version``
(``<version>`` or ``<version>/<recipe>``), else from the container image's name."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from nemotron.errors import UserError


def pick_target(container_version: str | None, container: str | None,
                targets: Mapping[str, Any], library: str) -> tuple[Any, str]:
    """(target, recipe part or "") for a backend's ``targets`` (values have .key, .container)."""
    if not container_version:
        image = (container or "").split("/")[-1]
        container_version = next(
            (t.key for t in targets.values() if image and image == t.container.split("/")[-1]),
            None,
        )
        if container_version is None:
            raise UserError(
                f"cannot tell which {library} version the container {container or '(none)'} "
                "ships",
                hint=f"set run.container_version to one of {', '.join(targets)} "
                     "(optionally /<recipe>, e.g. super-v3/<recipe>)",
            )
    key, _, recipe = container_version.partition("/")
    if key not in targets:
        raise UserError(f"run.container_version={container_version!r}: unknown {library} version",
                        hint=f"known: {', '.join(targets)}")
    return targets[key], recipe
