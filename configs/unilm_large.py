"""UniLM v1 (BERT-large sized: L24 H1024 A16, V28996, six token types): 334,666,054 parameters (BertForPreTraining).

Recipe: UniLM's (Dong et al. 2019, section 3.1), recipes.unilm_config: batch 330 x 512, 770k steps, Adam lr 3e-5,
40k warm-up. The paper initializes from BERT-large (cased); `train --init` a `convert --from-hf` of it, whose two
token types the six of lm_segments do not match: add --config.model.type_vocab_size=2
--config.objective.lm_segments=false, or extend its token-type table as unilm-v1's modeling.py does (types 2, 3, 4
from type 0, type 5 from type 1). Scanned layers.
"""

from bert_jax import recipes


def get_config():
  return recipes.unilm_config(scan_layers=True)
