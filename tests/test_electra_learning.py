"""The tiny ELECTRA's demo recipe (configs/electra_tiny.py:demo) on the demo corpus, one device: on the held-out
batches (the evaluator `eval.every` and `bert-jax evaluate` use) its discriminator beats calling every token
original (1 - replaced share), with precision above 1/2."""

import jax

from bert_jax import config as config_lib
from bert_jax.train import evaluator as evaluator_lib
from bert_jax.train.metrics_writer import MetricsWriter


def test_demo_discriminator_beats_the_all_original_baseline_held_out(tmp_path):
  from bert_jax.train.trainer import Trainer

  config = config_lib.load_config("electra_tiny:demo", ["mesh.data=1", "eval.every=0"])
  trainer = Trainer(config, devices=jax.devices()[:1])
  state, _ = trainer.run(trainer.init_state(), trainer.batches(str(tmp_path)),
                         MetricsWriter(str(tmp_path), config.train.steps, enabled=False))
  held_out = evaluator_lib.Evaluator(trainer, tmp_path)(state.params)
  print({k: held_out[k] for k in ("disc_accuracy", "replaced_share", "disc_precision", "disc_recall", "disc_loss")})
  assert int(state.step) == 100 and 0.2 < held_out["replaced_share"] < 0.3  # 25% masked, few of them drawn right
  assert held_out["disc_accuracy"] > 1.0 - held_out["replaced_share"] + 0.01 and held_out["disc_precision"] > 0.5
