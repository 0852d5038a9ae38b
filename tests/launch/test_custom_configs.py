"""A user's own config files, as the docs tell them to write them: each builds on a built-in
through `defaults:`, shares one `name:` so every stage finds its upstream outputs, and is passed
by absolute or relative path from a folder outside the repository. The whole tiny chain runs
through eval (few steps) and the artifacts carry the custom name and a complete lineage."""

import json
import subprocess
import sys

from tests.cli_fixtures import REPO

# stage -> (CLI words, extra YAML for a short run, artifact made)
CHAIN = {
    "prep-pretrain": (["data", "prep", "pretrain"], "", "nano3-pretrain-data-mine"),
    "pretrain": (["pretrain"], "train: {train_iters: 6}\nscheduler: {warmup_iters: 1, "
                 "decay_iters: 2}\ncheckpoint: {save_interval: 6}\n",
                 "nano3-pretrain-model-mine"),
    "prep-sft": (["data", "prep", "sft"], "", "nano3-sft-data-mine"),
    "sft": (["sft"], "train: {train_iters: 2, eval_interval: 2}\nscheduler: {warmup_iters: 1}\n"
            "checkpoint: {save_interval: 2}\n", "nano3-sft-model-mine"),
    "prep-rl": (["data", "prep", "rl"], "data: {generate: {count: 40}}\n", "nano3-rl-data-mine"),
    "rl": (["rl"], "grpo: {max_num_steps: 1}\n", "nano3-rl-model-mine"),
    # eval reads the end of Stage 2 (dpo) by default; this chain stops at rl
    "eval": (["eval"], "run: {model: nano3-rl-model-mine}\neval:\n  tasks:\n"
             "    - {name: tiny_arithmetic, path: "
             "configs/eval/tiny_arithmetic.yaml, limit: 4}\n", "nano3-eval-results-mine"),
}


def _write_configs(folder):
    paths = {}
    for stage, (_, extra, _) in CHAIN.items():
        builtin = REPO / "recipes" / "nano3" / stage / "tiny.yaml"
        path = folder / "configs-of-mine" / f"{stage}.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"# my {stage}\ndefaults: [{builtin}]\nname: mine\n{extra}")
        paths[stage] = path
    return paths


def test_a_chain_of_custom_config_files_from_outside_the_repo(tmp_path):
    work = tmp_path / "project"
    work.mkdir()
    paths = _write_configs(work)
    env = {"NEMOTRON_HOME": str(tmp_path / "home"), "HF_HUB_OFFLINE": "1",
           "WANDB_MODE": "offline", "PATH": "/usr/bin:/bin"}
    for i, (stage, (words, _, _)) in enumerate(CHAIN.items()):
        # alternate absolute, relative and ./ paths
        given = [str(paths[stage]), str(paths[stage].relative_to(work)),
                 "./" + str(paths[stage].relative_to(work))][i % 3]
        proc = subprocess.run([sys.executable, "-m", "nemotron", "nano3", *words, "-c", given],
                              cwd=work, env=env, capture_output=True, text=True)
        assert proc.returncode == 0, f"{stage} -c {given}\n{proc.stdout[-3000:]}{proc.stderr}"
        assert "Traceback" not in proc.stderr
        assert f"registered {CHAIN[stage][2]}:v0" in proc.stdout, proc.stdout[-2000:]

    assert not (REPO / "artifacts").exists()
    home = tmp_path / "home"
    assert sorted(p.name for p in (home / "artifacts").iterdir() if p.is_dir()) == \
        sorted(name for _, _, name in CHAIN.values())
    graph = subprocess.run([sys.executable, "-m", "nemotron", "artifacts", "lineage",
                            "nano3-eval-results-mine", "--format", "json"], cwd=work, env=env,
                           capture_output=True, text=True)
    assert graph.returncode == 0, graph.stderr
    text = json.dumps(json.loads(graph.stdout))
    for _, _, name in CHAIN.values():
        assert name in text, name

    # the plan names the file it read, and a re-run finds the finished output
    again = subprocess.run([sys.executable, "-m", "nemotron", "nano3", "pretrain", "-c",
                            str(paths["pretrain"]), "--dry-run"], cwd=work, env=env,
                           capture_output=True, text=True)
    assert again.returncode == 0, again.stderr
    assert str(paths["pretrain"]) in again.stdout.replace("\n", "")
    assert "SKIP" in again.stdout and "nano3-pretrain-model-mine:v0" in again.stdout
