"""super3's tiny pretraining (LatentMoE, MTP) gives the same weights for the same seed in two
fresh homes. Before the local stages turned on torch's deterministic kernels it did not (20
steps, same seed, same machine: weights up to 1e-4 apart); this test failed then."""

from nemotron.lineage import Store
from tests.cli_fixtures import weights_digest

SHORT = ["pretrain.train.train_iters=8", "pretrain.scheduler.warmup_iters=2",
         "pretrain.scheduler.decay_iters=2", "pretrain.train.eval_interval=8",
         "pretrain.checkpoint.save_interval=8"]


def test_same_seed_same_super3_weights(cli, home):
    digests = []
    for folder in (home, home.parent / "home-2"):
        res = cli("super3", "pipe", "-c", "tiny", "--to", "pretrain", *SHORT,
                  env={"NEMOTRON_HOME": str(folder)})
        assert res.exit_code == 0, res.output[-4000:]
        with Store.open(folder / "artifacts" / "lineage.db") as store:
            digests.append(weights_digest(store.resolve("super3-pretrain-model-tiny").path))
    assert digests[0] == digests[1]
