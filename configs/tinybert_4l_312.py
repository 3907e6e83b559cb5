"""TinyBERT-4L-312 (Jiao et al. 2020; huawei-noah's General_TinyBERT_4L_312D): a BERT of 4 layers, width 312, 12
heads, FFN 1200 (14,350,248 parameters as Hugging Face's BertModel counts them), trained by general distillation
(objective tinybert, recipes.tinybert_config) from a BERT-base teacher: --config.objective.teacher=<a `convert
--from-hf bert-base-uncased` output or a run's workdir>. Its fit_dense projects the student's 312 to the teacher's
768 (model.fit_size) and is left out of the export (a BertForPreTraining). The student starts at random.
"""

from bert_jax import recipes


def get_config():
  return recipes.tinybert_config()
