"""ERNIE 1.0 base, Chinese (L12 H768 A12, V18000, ReLU, 513 positions): ErnieModel counts 99,866,112 parameters.

Sizes: the ERNIE 1.0 release's ernie_config.json (the ernie family's defaults). Recipe: ERNIE's, recipes.ernie_config:
knowledge masking by characters, then jieba's noun phrases, then its named entities (data.word_segmenter=jieba_pos,
objective.stages). Differs from the original in the segmenter (jieba, not Baidu's lexical analysis), the stage split
(a third of the steps each, assumed), the 15% budget per sequence and the masks drawn anew each epoch (the release
picks each unit with p 0.15 on data segmented once).
"""

from bert_jax import recipes


def get_config():
  return recipes.ernie_config()
