"""The fine-tuning recipe on a pretrained model's config (GLUE-style classification and regression, SQuAD), with the
changes a family's release made to it (its descriptor's `finetune`)."""

import ml_collections

from bert_jax import models
from bert_jax.recipes.base import base_config

# What a fine-tuning run's task reads (bert_jax/data/tasks.py); `bert-jax finetune` fills it from its arguments.
TASK = {"name": "", "data_dir": "", "train": "", "dev": "", "test": "", "text_a": "sentence", "text_b": "",
        "label": "label", "kind": "classification", "labels": "", "metrics": "", "epochs": 3.0,
        "warmup_proportion": 0.1, "augmented": ""}


def finetune_config(pretrained: ml_collections.ConfigDict, **task) -> ml_collections.ConfigDict:
  """BERT's fine-tuning recipe (google-research/bert run_classifier.py; the paper's section 4.1 and appendix A.3)
  on a pretrained model's config: a classification head, AdamW lr 2e-5 (the paper's grid: 5e-5, 3e-5, 2e-5; batch
  16 or 32; 3 epochs), weight decay 0.01, warm-up over the first 10% of the steps then linear decay, gradients
  clipped at 1.0, max_seq_length 128 (or the model's positions, where fewer), the model's dropout kept; evaluated
  and checkpointed every epoch, the best epoch kept by the task's first metric. train.steps 0 and
  optimizer.warmup_steps -1 stand for "from task.epochs and task.warmup_proportion" until `bert_jax.finetune` knows
  the task's size. A family whose release changed this recipe says how in its descriptor (`finetune`: ELECTRA's
  layer-wise decay, BART's fairseq GLUE recipe, GPT-1's, T5's text to text); the text framing is its pretraining's."""
  c = ml_collections.ConfigDict(pretrained.to_dict())
  family = models.descriptor(pretrained.model)
  c.task = ml_collections.ConfigDict(TASK)
  c.task.update(task)
  c.data.update(source="task", seq_len=128)
  c.train.update(steps=0, batch_size=32, microbatches=1, log_every=10, clip_norm=1.0)
  c.optimizer = base_config().optimizer
  if c.task.name == "squad":  # BERT's SQuAD v1.1 recipe: 384 tokens, stride 128, lr 5e-5, batch 32, 3 epochs
    c.model.update(head="span")
    c.objective = ml_collections.ConfigDict({"name": "question_answering", "doc_stride": 128, "max_query_len": 64,
                                             "max_answer_len": 30, "n_best": 20, "null_threshold": 0.0})
    c.data.seq_len = 384
    c.optimizer.update(learning_rate=5e-5, warmup_steps=-1, eps=1e-6)
  else:
    c.model.update(head="classification")
    c.objective = ml_collections.ConfigDict({"name": "classification",
                                             "framing": family.finetune_framing(pretrained.objective)})
    c.optimizer.update(learning_rate=2e-5, warmup_steps=-1, eps=1e-6)
  if family.finetune:  # the family's changes to this recipe (its descriptor's)
    family.finetune(c, pretrained)
  positions = models.max_sequence_length(c.model)  # a small model's table may hold fewer than the recipe's tokens
  c.data.seq_len = min(c.data.seq_len, positions or c.data.seq_len)
  c.checkpoint.update(every=0, keep=1, best_metric="")
  c.eval.update(every=0, batch_size=32)
  return c
