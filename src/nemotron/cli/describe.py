"""Short descriptions drawn from the recipe folders, for help screens and completion: the first
sentence of a config's header comment, what a family's ``pipe`` chains."""

from __future__ import annotations

import re
from pathlib import Path

from nemotron.recipes import Family


def header_sentence(path: Path) -> str:
    """The first sentence of a config's opening comment block (house style: every shipped
    config opens with one)."""
    words: list[str] = []
    try:
        with open(path, encoding="utf-8") as fh:
            for line in fh:
                text = line.strip()
                if not text.startswith("#"):
                    break
                text = text.lstrip("#").strip()
                if not text or re.match(r"^(Needs|Run|Try):", text):
                    break
                words.append(text)
    except OSError:
        return ""
    joined = " ".join(words)
    match = re.search(r"^(.+?\.)(\s|$)", joined)
    sentence = match.group(1) if match else joined
    return sentence if len(sentence) <= 150 else sentence[:150].rsplit(" ", 1)[0] + " ..."


def pipe_summary(family: Family) -> str:
    """What ``pipe`` composes, from the family's chains."""
    chains = dict(family.pipe)
    main = chains.pop("default", None) or chains.pop(next(iter(chains)))
    others = "; ".join(f"-c {name}: {' → '.join(chain)}" for name, chain in chains.items())
    return " → ".join(main) + (f" ({others})" if others else "")
