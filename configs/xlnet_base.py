"""XLNet-base (L12 H768 A12, V32000): 116,750,336 parameters (116,718,336 without the LM bias).

Sizes: the released XLNet-Base (the xlnet family's defaults). Recipe: XLNet-Large's, recipes.xlnet_config,
applied at base size (configs/README.md, "Recipes", note 8: the paper details only the large one's). Differs from the
original (notes 9-10): linear decay to 0 where XLNet stops at 0.001 x peak; note 10 says how the memory
travels across batches.
"""

from bert_jax import recipes


def get_config():
  return recipes.xlnet_config()
