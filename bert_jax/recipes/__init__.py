"""The recipes every config starts from; a config file names one and lists what differs.

  base.py         base_config: what every run shares; quick_run and tiny: a recipe cut to minutes on a CPU
  pretraining.py  <family>_config: each family's pretraining recipe as its original release ran it
  finetuning.py   finetune_config: the fine-tuning recipe on a pretrained config; TASK, what a task reads
"""

from bert_jax.recipes.base import base_config, quick_run, tiny
from bert_jax.recipes.finetuning import TASK, finetune_config
from bert_jax.recipes.pretraining import (
                                          T5_V1_1,
                                          albert_config,
                                          bart_config,
                                          bert_config,
                                          distilbert_config,
                                          electra_config,
                                          ernie_config,
                                          gpt2_config,
                                          mass_config,
                                          roberta_config,
                                          spanbert_config,
                                          t5_config,
                                          tinybert_config,
                                          unilm_config,
                                          xlnet_config,
)

__all__ = ["TASK", "T5_V1_1", "albert_config", "bart_config", "base_config", "bert_config", "distilbert_config",
           "electra_config", "ernie_config", "finetune_config", "gpt2_config", "mass_config", "quick_run",
           "roberta_config", "spanbert_config", "t5_config", "tiny", "tinybert_config", "unilm_config", "xlnet_config"]
