"""`bert-jax params` reproduces the published parameter counts exactly (DESIGN.md's table); the FLOP counter
(bert_jax.flops, read off the traced loss) agrees with the closed forms written by hand per family."""

import json

import analytic_flops
import pytest

from bert_jax import cli, config as config_lib, flops, params

EXACT = {  # config: (pretraining model, bare encoder incl. pooler), Hugging Face's counting convention
    "bert_base": (110_106_428, 109_482_240),
    "bert_large": (336_226_108, 335_141_888),
    "roberta_base": (124_697_433, 124_645_632),
    "albert_base": (11_813_810, 11_683_584),
    "albert_large": (17_847_474, 17_683_968),
    "albert_xlarge": (59_021_490, 58_724_864),
    "albert_xxlarge": (223_158_450, 222_595_584),
    "distilbert_base": (66_985_530, 66_362_880),  # DistilBertForMaskedLM, DistilBertModel
    "ernie_base_zh": (100_477_778, 99_866_112),  # ErnieModel (ernie-1.0)
    "tinybert_4l_312": (14_720_060, 14_350_248),  # BertModel (General_TinyBERT_4L_312D); the total adds fit_dense
}


@pytest.mark.parametrize("name", sorted(EXACT))
def test_exact_counts(name):
  counts = params.count_model(config_lib.load_config(name).model)
  assert (counts["total"], counts["encoder"]) == EXACT[name]


@pytest.mark.parametrize("overrides", [["model.scan_layers=True"], ["model.remat=full"],
                                       ["model.scan_layers=True", "model.remat=dots"]])
def test_scan_and_remat_keep_the_count(overrides):
  assert params.count_model(config_lib.load_config("bert_large", overrides).model)["total"] == 336_226_108
  assert params.count_model(config_lib.load_config("albert_base", overrides).model)["total"] == 11_813_810


# The ALBERT paper's sharing ablation (ALBERT-base, Table 4): E=768 without the E->H projection (the
# original code projects only when E != H), E=128 with it; encoder counted with its pooler.
ABLATION = {
    (768, "all"): (31_114_752, 31e6), (768, "attention"): (83_078_400, 83e6),
    (768, "ffn"): (57_117_696, 57e6), (768, "none"): (109_081_344, 108e6),
    (128, "all"): (11_683_584, 12e6), (128, "attention"): (63_647_232, 64e6),
    (128, "ffn"): (37_686_528, 38e6), (128, "none"): (89_650_176, 89e6),
}


@pytest.mark.parametrize("embedding,share", sorted(ABLATION))
def test_albert_sharing_ablation(embedding, share):
  overrides = [f"model.embedding_size={embedding}", f"model.share={share}",
               f"model.embedding_projection={embedding != 768}"]
  encoder = params.count_model(config_lib.load_config("albert_base", overrides).model)["encoder"]
  exact, paper = ABLATION[embedding, share]
  assert encoder == exact
  assert abs(encoder - paper) < 1.1e6  # the paper rounds (and counts BERT-base as 108M, without pooler)


def test_params_json_command(capsys):
  assert cli.main(["params", "--config", "albert_base", "--json"]) == 0
  result = json.loads(capsys.readouterr().out)
  assert result["total"] == 11_813_810 and result["encoder"] == 11_683_584
  assert sum(result["breakdown"].values()) == result["total"]


def test_params_table_command(capsys):
  assert cli.main(["params", "--config", "bert_base"]) == 0
  out = capsys.readouterr().out
  assert "110,106,428" in out and "109,482,240" in out and "encoder/pooler" in out


@pytest.mark.parametrize("name", ("bert_tiny", "albert_tiny", "roberta_tiny", "xlnet_tiny", "t5_tiny", "t5_small"))
def test_traced_flops_and_tensor_traffic_equal_the_closed_forms(name):
  config = config_lib.load_config(name)
  assert flops.flops_per_token(config) == analytic_flops.flops_per_token(config)
  assert flops.tensor_all_reduce_elements(config) == analytic_flops.tensor_all_reduce_elements(config)


@pytest.mark.parametrize("name", ("bert_tiny", "t5_tiny"))
def test_scan_remat_and_dtype_keep_the_traced_costs(name):
  config = config_lib.load_config(name)
  costs = lambda c: (flops.flops_per_token(c), flops.tensor_all_reduce_elements(c))
  for overrides in (["model.scan_layers=True"], ["model.remat=full"], ["model.dtype=bfloat16"]):
    assert costs(config_lib.load_config(name, overrides)) == costs(config)

