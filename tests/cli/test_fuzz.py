"""Property-based tests of the front door: random override strings, env.toml documents and
artifact references go through the real CLI in-process. The only outcomes allowed are exit 0,
or exit 2 with an ``error:`` message; an exception (a traceback) fails the test.

Cases per run (``max_examples``): 150 override lists, 80 env.toml documents, 80 references.
"""

from __future__ import annotations

import json
import os
import string

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tests.cli_fixtures import _shim

CASES = {"overrides": 150, "env": 80, "refs": 80}


def fuzz(cases: int) -> settings:
    """Reproducible (derandomized, no example database), no per-case deadline."""
    return settings(max_examples=cases, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture,
                                           HealthCheck.too_slow])
PRETRAIN = ["nano3", "pretrain", "-c", "tiny", "-d", "run.data=/tmp"]

# ---------------------------------------------------------------------------- strategies

KEYS = ["train.train_iters", "train.global_batch_size", "optimizer.lr", "run.seed", "run.data",
        "run.model", "run.env.nodes", "model.num_layers", "parallel.tp", "scheduler.style",
        "checkpoint.save_interval", "data.tokenizer.path", "run.wandb", "train", "run", "model"]
NUMBERS = st.one_of(
    st.integers(), st.integers(min_value=-(10**40), max_value=10**40),
    st.floats(allow_nan=True, allow_infinity=True), st.booleans(),
)
LITERALS = st.sampled_from([  # what users and copy-paste produce
    "9" * 5000, "1e999", "-1e999", ".nan", ".inf", "0x1F", "1_000", "-0", "2**64",
    "[1, 2", "{a: 1", "[]", "{}", "null", "~", "true", "yes", "'x'", '"x', "a: b: c", "- x",
    "&a [*a]", "!!python/object:os.system", "@x", "`x`", "%x", "[red]x[/red]", ":smile:",
    "a:b:c", "\t", "\u202e", "ключ", "東京", "x@zzzz", "NAME:v-1", "x:", "{a: [1, {b: ",
])
VALUES = st.one_of(LITERALS, NUMBERS.map(str), st.text(max_size=30))
KEY_TEXT = st.one_of(st.sampled_from(KEYS), st.text(max_size=20),
                     st.from_regex(r"\A[a-z_]{1,8}(\.[a-zа-я_\-]{1,8}){0,3}\Z"))
OVERRIDES = st.one_of(
    st.builds(lambda k, v: f"{k}={v}", KEY_TEXT, VALUES),
    st.builds(lambda k: f"~{k}", KEY_TEXT),
    st.text(max_size=40),
)

PROFILE_KEYS = ["executor", "nodes", "gpus_per_node", "ntasks_per_node", "time", "account",
                "partition", "env_vars", "extends", "mounts", "setup", "tunnel", "host",
                "container_image", "retries", "exclusive", "nodez", "project", "mode"]
SCALARS = st.one_of(st.integers(min_value=-(2**63), max_value=2**63 - 1), st.booleans(),
                    st.floats(allow_nan=False, allow_infinity=False),
                    st.sampled_from(["local", "slurm", "docker", "ssh", "online", "x:y"]),
                    st.text(max_size=12))
TOML_VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=3), max_leaves=5)
TABLE_NAMES = st.one_of(st.sampled_from(["local", "wandb", "artifacts", "gpu", "base"]),
                        st.text(alphabet=string.ascii_letters + "-_", min_size=1, max_size=8))
TABLES = st.dictionaries(
    TABLE_NAMES,
    st.dictionaries(st.one_of(st.sampled_from(PROFILE_KEYS), st.text(max_size=8)),
                    st.one_of(TOML_VALUES, st.dictionaries(st.text(max_size=6), SCALARS,
                                                           max_size=3)),
                    max_size=5),
    max_size=3,
)


def toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a TOML basic string
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return "{" + ", ".join(f"{json.dumps(k)} = {toml_value(v)}" for k, v in value.items()) + "}"


def toml_document(tables: dict) -> str:
    lines = []
    for name, table in tables.items():
        lines.append(f"[{json.dumps(name)}]")
        lines += [f"{json.dumps(k)} = {toml_value(v)}" for k, v in table.items()]
    return "\n".join(lines) + "\n"


ENV_DOCS = st.one_of(TABLES.map(toml_document), st.text(max_size=200))
REFS = st.one_of(
    st.text(max_size=40),
    st.builds(lambda n, sep, v: f"{n}{sep}{v}",
              st.sampled_from(["nano3-pretrain-data-tiny", "nano3-sft-model-tiny", "x", ""]),
              st.sampled_from([":", "@", "::", ":v", "@@", "/"]),
              st.one_of(st.text(max_size=12), st.integers().map(str))),
    st.sampled_from(["./nope", "~/nope", "/", "..", "nano3-pretrain-data-tiny:latest",
                     "nano3-pretrain-data-tiny:v0", "nano3-pretrain-data-tiny@" + "0" * 64]),
)

# ---------------------------------------------------------------------------- harness


@pytest.fixture
def run(home, tmp_path):
    counter = {"n": 0}

    def invoke(*args: str):
        counter["n"] += 1
        result = CliRunner().invoke(_shim, list(args), env={"COLUMNS": "200"},
                                    catch_exceptions=False)
        assert result.exit_code in (0, 2), (args, result.output)
        if result.exit_code == 2:
            assert result.stderr.strip(), (args, "exit 2 without a message")
            assert "Traceback" not in result.output, (args, result.output)
        return result

    invoke.count = counter
    return invoke


def _no_nul(text: str) -> bool:
    return "\x00" not in text  # argv cannot carry NUL bytes


@fuzz(CASES["overrides"])
@given(overrides=st.lists(OVERRIDES.filter(_no_nul), min_size=1, max_size=3))
@example(overrides=["train.train_iters=&a [*a]"])  # found by this test: an alias cycle
def test_random_overrides_end_in_0_or_2(run, overrides):
    run(*PRETRAIN, *overrides)


@fuzz(CASES["env"])
@given(document=ENV_DOCS, profile=TABLE_NAMES.filter(_no_nul))
@example(document='["local"]\n"extends" = [0]\n', profile="local")  # found by this test
@example(document='[a]\nextends = "local"\nenv_vars = [1]\n', profile="a")
def test_random_env_toml_documents_end_in_0_or_2(run, tmp_path, document, profile):
    path = tmp_path / "env.toml"
    path.write_text(document, encoding="utf-8")
    run("profiles", "list", "--env-file", str(path))
    run("profiles", "show", profile, "--env-file", str(path))
    run(*PRETRAIN, "--env-file", str(path), "--run", profile)


@pytest.fixture
def store_with_data(home, tmp_path):
    from nemotron.lineage import Producer, Store, identity

    data = tmp_path / "data"
    data.mkdir()
    (data / "blend.json").write_text('{"train": []}')
    with Store.open(home / "artifacts" / "lineage.db") as store:
        pending = store.begin(name="nano3-pretrain-data-tiny", kind="pretrain-data",
                              identity=identity(seed=1), path=data,
                              producer=Producer.current("test", discover_git=False))
        pending.commit({"blend": "blend.json", "tokenizer": "tokenizer", "tokens": {"train": 1},
                        "prefixes": {"train": []}})
    os.environ.pop("NEMOTRON_ENV_FILE", None)


@fuzz(CASES["refs"])
@given(ref=REFS.filter(_no_nul))
def test_random_artifact_references_end_in_0_or_2(run, store_with_data, ref):
    run("nano3", "sft", "-c", "tiny", "-d", f"run.model={ref}", f"run.data={ref}")
    run("artifacts", "show", ref)
    run("artifacts", "verify", ref)
