"""Help screens built from recipes/ and env.toml: the family's command panels and a stage's
Global Options, Configs, Artifact Overrides, Run Overrides, Profiles and Examples."""

from __future__ import annotations

import re
import textwrap

import pytest


def panels(text: str) -> dict[str, str]:
    """Panel title -> its content, rows unwrapped into one line of single-spaced words."""
    found: dict[str, list[str]] = {}
    title = None
    for line in text.splitlines():
        head = re.match(r"^╭─ (.+?) ─+╮$", line)
        if head:
            title = head.group(1)
            found[title] = []
        elif line.startswith("╰"):
            title = None
        elif title is not None and line.startswith("│"):
            found[title].append(line.strip("│ "))
    return {t: " ".join(" ".join(rows).split()) for t, rows in found.items()}


def titles(text: str) -> list[str]:
    return re.findall(r"^╭─ (.+?) ─+╮$", text, re.M)


@pytest.mark.parametrize("family", ["nano3", "super3"])
def test_family_help_groups_commands_in_panels(cli, family):
    res = cli(family, "--help")
    assert res.exit_code == 0, res.output
    assert titles(res.stdout)[:5] == ["Training Stages", "Evaluation", "Pipeline",
                                      "Data Preparation", "Model Conversion and Checks"]
    got = panels(res.stdout)
    stage2 = family == "nano3"  # nano3's Stage 2: rl -> rlhf -> dpo
    assert re.findall(r"(?:^| )(pretrain|sft|rl|rlhf|dpo) [A-Z]", got["Training Stages"]) == \
        ["pretrain", "sft", "rl", *(["rlhf", "dpo"] if stage2 else [])]
    assert got["Evaluation"].startswith("eval Evaluate a model")
    default, tiny_tail = ("pretrain → sft → rl → rlhf → dpo", "rl → rlhf → prep-dpo → dpo → eval"
                          ) if stage2 else ("pretrain → sft", "rl → eval")
    assert got["Pipeline"] == (f"pipe Compose {default} (-c tiny: prep-pretrain → pretrain → "
                               f"prep-sft → sft → prep-rl → {tiny_tail}) into a single nemo-run "
                               "Experiment")
    for words in ("data prep pretrain", "data prep sft", "data prep rl"):
        assert words in got["Data Preparation"]
    for words in ("model import", "model export", "model merge-lora"):
        assert words in got["Model Conversion and Checks"]
    assert ("model quantize" in got["Model Conversion and Checks"]) == (family == "super3")
    nested = panels(cli(family, "data", "prep", "--help").stdout)["Commands"]
    assert nested.startswith("pretrain Tokenize")


@pytest.mark.parametrize("family", ["nano3", "super3"])
def test_stage_help_panels_name_configs_inputs_overrides(cli, family):
    from nemotron.cli.panels import header_sentence
    from nemotron.recipes import get_family

    stage = get_family(family).stage("sft")
    res = cli(family, "sft", "--help")
    assert res.exit_code == 0, res.output
    assert titles(res.stdout) == ["Global Options", "Options", "Configs (-c/--config)",
                                  "Artifact Overrides (run.SLOT=NAME[:VERSION] or PATH)",
                                  "Run Overrides (override env.toml settings)",
                                  "env.toml Profiles", "Examples"]
    got = panels(res.stdout)
    glob = got["Global Options"]
    assert "-c, --config NAME Config name or path" in glob
    for option in ("-r, --run PROFILE", "-b, --batch PROFILE", "-d, --dry-run", "--stage",
                   "--env-file PATH"):
        assert option in glob
    assert "--peft PEFT" in got["Options"] and "--stage" not in got["Options"]

    configs = got["Configs (-c/--config)"]
    assert configs.startswith(f"Built-in: {', '.join(stage.configs())} ")
    assert {"default", "tiny"} <= set(stage.configs())
    for name in stage.configs():
        sentence = header_sentence(stage.config_dir / f"{name}.yaml")
        assert len(sentence) > 10 and f"{name} {sentence}" in configs
    assert configs.endswith("Custom: -c /path/to/your/config.yaml")

    arts = got["Artifact Overrides (run.SLOT=NAME[:VERSION] or PATH)"]
    assert (f"run.data sft-data artifact; default: the latest {family}-sft-data[-CONFIG], made "
            f"by `nemotron {family} data prep sft -c CONFIG`") in arts
    assert (f"run.model model artifact; default: the latest {family}-pretrain-model[-CONFIG], "
            f"made by `nemotron {family} pretrain -c CONFIG`") in arts
    assert "Versions: NAME (its latest), NAME:v3, NAME:latest, NAME:<alias>" in arts

    run = got["Run Overrides (override env.toml settings)"]
    for key in ("nodes", "nproc_per_node", "gpus_per_node", "partition", "account", "time",
                "container_image", "mounts"):
        assert f"run.env.{key}=" in run
    assert "run.env.nproc_per_node=N GPUs per node" in run
    assert f"run.env.nodes=N Number of nodes; this stage on clusters: {stage.resources['nodes']}" \
        in run
    assert stage.container in run

    assert got["env.toml Profiles"].startswith("No env.toml here or in a parent folder")
    assert "[my-cluster] executor = \"slurm\"" in got["env.toml Profiles"]
    assert f"nemotron {family} sft --stage --run my-cluster" in got["Examples"]


def test_stage_help_lists_the_profiles_found(cli, env_toml):
    path = env_toml('[gpu-a]\nexecutor = "slurm"\naccount = "a"\n[dev]\nexecutor = "local"\n')
    res = cli("nano3", "pretrain", "--env-file", str(path), "--help")
    got = panels(res.stdout)
    assert got["env.toml Profiles"] == (f"Available profiles: dev, gpu-a, local (from {path}) "
                                        "Usage: --run PROFILE or --batch PROFILE")
    assert ("nemotron nano3 pretrain --run gpu-a run.env.nproc_per_node=8 run.env.time=02:00:00"
            in got["Examples"])


def test_stage_help_dry_run_examples_run(cli):
    help_text = cli("nano3", "sft", "--help").stdout
    examples = [line.split("#")[0].split() for line in
                panels(help_text)["Examples"].split("nemotron ")[1:]]
    dry = [words for words in examples if "--dry-run" in words]
    assert len(dry) == 2
    for words in dry:
        res = cli(*words)
        assert res.exit_code == 0, (words, res.output)
        assert "plan:" in res.stdout


def test_a_new_family_folder_gets_the_panels(cli, tmp_path, monkeypatch):
    root = tmp_path / "recipes"
    fam = root / "mini9"
    for folder in ("prep", "pretrain", "judge"):
        (fam / folder).mkdir(parents=True)
    (fam / "family.yaml").write_text(textwrap.dedent("""\
        name: mini9
        title: Mini 9
        description: a family made inside the test.
        containers: {box: registry.example/box:1}
        stages:
          prep:
            command: data prep pretrain
            entry: prep
            help: Tokenize the mini corpus.
            outputs: {data: {kind: pretrain-data, name: pretrain-data}}
          pretrain:
            entry: pretrain
            help: Pretrain the mini model. Second sentence.
            inputs:
              data: {kind: pretrain-data, from: prep}
              model: {kind: model, optional: true}
            outputs: {model: {kind: model, name: pretrain-model}}
            container: box
            resources: {nodes: 3, gpus_per_node: 4, time: "01:00:00"}
          judge:
            entry: eval
            help: Judge the mini model.
            inputs: {model: {kind: model, from: pretrain}}
            outputs: {results: {kind: eval-results, name: eval-results}}
        pipe:
          default: [prep, pretrain, judge]
        """))
    (fam / "pretrain" / "default.yaml").write_text(
        "# Mini pretraining for the panel test. More words here.\n# Needs: data.\n"
        "defaults: [configs/models/nano3-tiny]\n")
    (fam / "pretrain" / "small.yaml").write_text("# A smaller mini run.\nrun: {seed: 1}\n")
    monkeypatch.setenv("NEMOTRON_RECIPES_DIR", str(root))
    from nemotron.recipes import _discover

    _discover.cache_clear()
    try:
        top = cli("mini9", "--help")
        assert top.exit_code == 0, top.output
        assert titles(top.stdout)[:4] == ["Training Stages", "Evaluation", "Pipeline",
                                          "Data Preparation"]
        got = panels(top.stdout)
        assert got["Training Stages"] == "pretrain Pretrain the mini model"
        assert got["Evaluation"] == "judge Judge the mini model"
        assert got["Pipeline"] == ("pipe Compose prep → pretrain → judge into a single nemo-run "
                                   "Experiment")
        assert got["Data Preparation"] == "data prep pretrain Tokenize the mini corpus"

        stage = panels(cli("mini9", "pretrain", "--help").stdout)
        assert stage["Configs (-c/--config)"] == (
            "Built-in: default, small default Mini pretraining for the panel test. "
            "small A smaller mini run. Custom: -c /path/to/your/config.yaml")
        arts = stage["Artifact Overrides (run.SLOT=NAME[:VERSION] or PATH)"]
        assert ("run.data pretrain-data artifact; default: the latest "
                "mini9-pretrain-data[-CONFIG], made by `nemotron mini9 data prep pretrain -c "
                "CONFIG`") in arts
        assert "run.model model artifact; optional: used only when given" in arts
        run = stage["Run Overrides (override env.toml settings)"]
        assert "run.env.nodes=N Number of nodes; this stage on clusters: 3" in run
        assert "run.env.nproc_per_node=N GPUs per node (the same as run.env.gpus_per_node); " \
               "this stage on clusters: 4" in run
        assert "this stage on clusters: registry.example/box:1" in run
        assert "nemotron mini9 pretrain --stage --run my-cluster" in stage["Examples"]
        judge = panels(cli("mini9", "judge", "--help").stdout)
        assert "Configs (-c/--config)" in judge and judge["Configs (-c/--config)"].startswith(
            "Built-in: none Custom:")
    finally:
        _discover.cache_clear()



def test_stage_help_still_shows_with_a_broken_env_toml(cli, env_toml):
    path = env_toml("[x\nbad")
    res = cli("nano3", "sft", "--env-file", str(path), "--help")
    assert res.exit_code == 0, res.output
    got = panels(res.stdout)
    assert got["env.toml Profiles"].startswith(
        f"env.toml could not be read: invalid TOML in {path}: ")
    assert "--stage --run my-cluster" in got["Examples"]
