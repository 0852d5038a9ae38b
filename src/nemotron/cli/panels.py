"""Help screens that teach, built from what ``recipes/`` and env.toml hold.

``nemotron <family> --help`` groups the family's commands into panels (Training Stages,
Evaluation, Pipeline, then each command group such as ``data`` and ``model``). A stage's
``--help`` shows its Global Options, its own Options, the built-in Configs (each with the first
sentence of its header comment), its input slots as Artifact Overrides, the Run Overrides, the
env.toml profiles found, and Examples. Nothing here names a family: a new folder under
``recipes/`` gets the same screens. Plain text in rounded boxes, no rich import, so ``--help``
stays fast.
"""

from __future__ import annotations

import shutil
import textwrap
from collections.abc import Iterable, Sequence

from nemotron.cli.describe import header_sentence, pipe_summary
from nemotron.recipes import Family, Stage

# stage entry point -> the panel its command is listed in
ENTRY_PANELS = {"pretrain": "Training Stages", "sft": "Training Stages", "rl": "Training Stages",
                "dpo": "Training Stages", "eval": "Evaluation"}
PANEL_ORDER = ("Training Stages", "Evaluation", "Pipeline")
# first command word of a group -> its panel title
GROUP_PANELS = {"data": "Data Preparation", "model": "Model Conversion and Checks"}

GLOBAL_OPTIONS = (
    ("-c, --config NAME", "Config name or path"),
    ("-r, --run PROFILE", "Run attached on an env.toml profile: streams the output, returns "
                          "the stage's exit code"),
    ("-b, --batch PROFILE", "Submit detached on an env.toml profile: prints the job id and "
                            "returns"),
    ("-d, --dry-run", "Print the plan (resolved config, executor, command or sbatch script, "
                      "inputs, outputs, cost); write nothing"),
    ("--stage", "With --run/--batch PROFILE: put the job on the target as a submission would "
                "(job folder, sbatch script), submit nothing, print the commands that run it "
                "interactively"),
    ("--env-file PATH", "env.toml to use (default: $NEMOTRON_ENV_FILE or the nearest env.toml "
                        "upwards)"),
    ("-h, --help", "Show this help"),
)
RUN_OVERRIDES = (
    ("nodes", "N", "Number of nodes"),
    ("nproc_per_node", "N", "GPUs per node (the same as run.env.gpus_per_node)"),
    ("gpus_per_node", "N", "GPUs per node"),
    ("partition", "NAME", "Slurm partition"),
    ("account", "NAME", "Slurm account"),
    ("time", "HH:MM:SS", "Time limit (Slurm forms: MM, HH:MM:SS, D-HH:MM:SS)"),
    ("container_image", "IMAGE", "Container image (pyxis/enroot or Docker)"),
    ("mounts", "[SRC:DST,...]", "Container mounts (replace the profile's)"),
)
VERSION_SYNTAX = ("NAME (its latest), NAME:v3, NAME:latest, NAME:<alias>, NAME@<identity>, "
                  "or a path (/data/blend, ./ckpt)")


# ---------------------------------------------------------------------------------------------
# drawing


def width() -> int:
    return max(60, min(shutil.get_terminal_size((100, 24)).columns, 110))


def box(title: str, rows: Iterable[tuple[str, str] | str], cols: int) -> list[str]:
    """A rounded box: two-column rows (left aligned to the widest) or full-width lines."""
    rows = list(rows)
    inner = cols - 4
    left_w = min(max((len(r[0]) for r in rows if isinstance(r, tuple)), default=0), inner // 2)
    out = [f"╭─ {title} " + "─" * max(0, cols - len(title) - 5) + "╮"]
    for row in rows:
        if isinstance(row, tuple):
            name, text = row
            wrap = textwrap.wrap(text, inner - left_w - 2, break_on_hyphens=False) or [""]
            if len(name) > left_w:
                lines = [name] + [" " * (left_w + 2) + w for w in wrap]
            else:
                lines = [f"{name:<{left_w}}  {wrap[0]}"]
                lines += [" " * (left_w + 2) + w for w in wrap[1:]]
        else:
            lead = len(row) - len(row.lstrip())
            lines = textwrap.wrap(row, inner, subsequent_indent=" " * (lead + 2),
                                  break_on_hyphens=False) if row.strip() else [""]
            lines = [" " * lead + lines[0].lstrip(), *lines[1:]] if lines else [""]
        out.extend(f"│ {line:<{inner}} │" for line in lines)
    out.append("╰" + "─" * (cols - 2) + "╯")
    return out


def screen(usage: str, about: str, panels: Sequence[tuple[str, list]]) -> str:
    cols = width()
    lines = [f"Usage: {usage}", ""]
    lines += [" " + w for w in textwrap.wrap(about, cols - 2)] + [""]
    for title, rows in panels:
        if rows:
            lines += box(title, rows, cols)
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------
# what the recipes and env.toml hold


def profile_rows(env_file: str | None) -> list[str]:
    """The env.toml profiles found, or how to create one."""
    from nemotron.errors import UserError
    from nemotron.profiles import find_env_file, profile_names

    try:
        path = find_env_file(env_file)
        names = profile_names(path) if path else []
    except UserError as exc:
        return [f"env.toml could not be read: {exc.message}",
                "Usage: --run PROFILE or --batch PROFILE"]
    if path is None:
        return [
            "No env.toml here or in a parent folder; only the built-in profile: local",
            "Create one: copy env.toml.example (it documents every key) to ./env.toml, or "
            "write a table such as",
            '  [my-cluster]  executor = "slurm", account = "ACCOUNT", partition = "batch"',
            "Usage: --run PROFILE or --batch PROFILE",
        ]
    shown = ", ".join(sorted({*names, "local"}))
    return [f"Available profiles: {shown}", f"  (from {path})",
            "Usage: --run PROFILE or --batch PROFILE"]


def _cluster_profile(env_file: str | None) -> str:
    from nemotron.errors import UserError
    from nemotron.profiles import find_env_file, profile_names

    try:
        path = find_env_file(env_file)
        names = [n for n in (profile_names(path) if path else []) if n != "local"]
    except UserError:
        names = []
    return names[0] if names else "my-cluster"


# ---------------------------------------------------------------------------------------------
# a stage's help


def config_rows(stage: Stage) -> list:
    rows: list = ["Built-in: " + (", ".join(stage.configs()) or "none")]
    for name in stage.configs():
        rows.append((f"  {name}", header_sentence(stage.config_dir / f"{name}.yaml")))
    rows.append("Custom: -c /path/to/your/config.yaml")
    return rows


def artifact_rows(family: Family, stage: Stage) -> list:
    rows: list = []
    for slot in stage.inputs:
        if slot.source:
            source = family.stages[slot.source]
            base = next((o.name or o.kind for o in source.outputs), slot.kind)
            fills = (f"default: the latest {family.name}-{base}[-CONFIG], made by "
                     f"`nemotron {family.name} {' '.join(source.command)} -c CONFIG`")
        elif slot.optional:
            fills = "optional: used only when given"
        else:
            fills = "required: no default, pass one"
        rows.append((f"run.{slot.slot}", f"{slot.kind} artifact; {fills}"))
    if rows:
        rows.append(f"Versions: {VERSION_SYNTAX}")
    return rows


def run_override_rows(stage: Stage) -> list:
    defaults = dict(stage.resources)
    if stage.container:
        defaults["container_image"] = stage.container
    if "gpus_per_node" in defaults:
        defaults["nproc_per_node"] = defaults["gpus_per_node"]
    rows: list = []
    for key, meta, text in RUN_OVERRIDES:
        if key in defaults:
            text += f"; this stage on clusters: {defaults[key]}"
        rows.append((f"run.env.{key}={meta}", text))
    rows.append("Unset keys come from the profile; none of these changes the output's identity.")
    return rows


def stage_examples(family: Family, stage: Stage, cluster: str) -> list[str]:
    base = f"nemotron {family.name} {' '.join(stage.command)}"
    configs = stage.configs()
    small = "tiny" if "tiny" in configs else (configs[0] if configs else "default")
    lines = [f"{base} -c {small}", f"{base} -c {small} --dry-run"]
    if "peft" in stage.flags:
        lines.append(f"{base} -c {small} --peft lora")
    if stage.inputs:
        slot = stage.inputs[0]
        lines.append(f"{base} -c {small} --dry-run run.{slot.slot}=/path/to/{slot.kind}")
    gpus = stage.resources.get("gpus_per_node")
    resources = f"run.env.nproc_per_node={gpus} " if gpus else ""
    lines.append(f"{base} --run {cluster} {resources}run.env.time=02:00:00")
    lines.append(f"{base} --stage --run {cluster}   # then: nemotron jobs submit ID")
    return lines


def stage_help(family: Family, stage: Stage, options: list[tuple[str, str]],
               env_file: str | None) -> str:
    words = " ".join(stage.command)
    cluster = _cluster_profile(env_file)
    return screen(
        f"nemotron {family.name} {words} [OPTIONS] [KEY=VALUE]...",
        f"{stage.help} Overrides are KEY=VALUE (the value is YAML); ~KEY deletes.",
        [
            ("Global Options", list(GLOBAL_OPTIONS)),
            ("Options", options),
            ("Configs (-c/--config)", config_rows(stage)),
            ("Artifact Overrides (run.SLOT=NAME[:VERSION] or PATH)", artifact_rows(family, stage)),
            ("Run Overrides (override env.toml settings)", run_override_rows(stage)),
            ("env.toml Profiles", profile_rows(env_file)),
            ("Examples", stage_examples(family, stage, cluster)),
        ],
    )


def pipe_help(family: Family, options: list[tuple[str, str]], env_file: str | None) -> str:
    cluster = _cluster_profile(env_file)
    chains = [(f"-c {name}" if name != "default" else "default", " → ".join(chain))
              for name, chain in family.pipe.items()]
    small = "tiny" if "tiny" in family.pipe else next(iter(family.pipe), "default")
    return screen(
        f"nemotron {family.name} pipe [OPTIONS] [KEY=VALUE]...",
        f"Compose {pipe_summary(family)} into a single nemo-run Experiment. Every stage is "
        "planned first; each starts after its upstream succeeded and consumes exactly the "
        "version it produced; stages whose outputs exist are skipped. Overrides apply to every "
        "stage that has the key; prefix one with a stage name (sft.train.train_iters=5) to "
        "target one stage.",
        [
            ("Global Options", [r for r in GLOBAL_OPTIONS if not r[0].startswith("--stage")]),
            ("Options", options),
            ("Chains", chains),
            ("env.toml Profiles", profile_rows(env_file)),
            ("Examples", pipe_examples(family, small, cluster)),
        ],
    )


def pipe_examples(family: Family, small: str, cluster: str) -> list[str]:
    base = f"nemotron {family.name} pipe"
    chain = family.pipe[small]
    lines = [f"{base} -c {small}", f"{base} -c {small} --dry-run"]
    if len(chain) > 2:
        lines.append(f"{base} -c {small} --from {chain[len(chain) // 2]} --to {chain[-1]}")
    trainer = next((n for n in chain if family.stages[n].entry == "pretrain"), None)
    if trainer:  # a prefix targets one stage
        lines.append(f"{base} -c {small} --dry-run {trainer}.train.train_iters=80")
    lines.append(f"{base} --batch {cluster}")
    return lines


# ---------------------------------------------------------------------------------------------
# a family's help


def family_panels(family: Family) -> list[tuple[str, list]]:
    """The family's commands, grouped: stages by entry point, then pipe, then each group."""
    panels: dict[str, list] = {}
    for stage in family.stages.values():
        if len(stage.command) == 1:
            title = ENTRY_PANELS.get(stage.entry, "Stages")
            row = (stage.command[0], short(stage.help))
        else:
            head = stage.command[0]
            title = GROUP_PANELS.get(head, head.capitalize())
            row = (" ".join(stage.command), short(stage.help))
        panels.setdefault(title, []).append(row)
    if family.pipe:
        panels["Pipeline"] = [("pipe", f"Compose {pipe_summary(family)} into a single "
                                       "nemo-run Experiment")]
    ordered = [t for t in PANEL_ORDER if t in panels]
    ordered += [t for t in panels if t not in ordered]
    return [(t, panels[t]) for t in ordered]


def family_help(family: Family) -> str:
    panels = family_panels(family)
    panels.append(("Options", [("-h, --help", "Show this help")]))
    first = next((s for s in family.stages.values() if len(s.command) == 1), None)
    if first is not None:
        example = f"nemotron {family.name} {first.command[0]} --help"
        panels.append(("Next", [f"{example}   # configs, inputs, overrides, profiles"]))
    return screen(f"nemotron {family.name} COMMAND [ARGS]...",
                  f"{family.title}: {family.description}", panels)


def group_help(family: Family, words: tuple[str, ...], about: str) -> str:
    rows = [(" ".join(s.command[len(words):]), short(s.help)) for s in family.stages.values()
            if s.command[: len(words)] == words]
    title = GROUP_PANELS.get(words[0], "Commands") if len(words) == 1 else "Commands"
    return screen(f"nemotron {family.name} {' '.join(words)} COMMAND [ARGS]...", about,
                  [(title, rows), ("Options", [("-h, --help", "Show this help")])])


def short(text: str) -> str:
    return text.split(". ")[0].rstrip(".")

