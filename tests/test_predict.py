"""`bert-jax predict`: fill-mask on a tiny BERT equals a direct model.apply (top-k ids and probabilities); a bias that
makes one piece win shows in the filled text through the CLI, from a run's workdir and from a `convert --from-hf`
directory alike; XLNet's guesses equal a direct apply with Hugging Face's perm_mask / target mapping recipe; T5's
span infilling equals a step-by-step greedy decode; bad input is one clear line."""

import json

from checkpoint_helpers import demo_overrides
from cli_helpers import error_line
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bert_jax import checkpoint, cli, config as config_lib, convert
from bert_jax.convert import weights
from bert_jax.data import tokenizer as tokenizer_lib
from bert_jax.errors import UserError
from bert_jax.files.workdir import save_config
from bert_jax.objectives import blanks
from bert_jax.objectives.masked_lm import MaskedLM
from bert_jax.predict import Predictor
from bert_jax.train.trainer import Trainer

TEXTS = ["the [MASK] of the city", "[MASK] was a [MASK] man ."]


def softmax(logits):
  logits = np.asarray(logits, np.float64)
  e = np.exp(logits - logits.max(-1, keepdims=True))
  return e / e.sum(-1, keepdims=True)


def encoded(tokenizer, text: str) -> tuple[list[int], list[int]]:
  """Ids of `text` with [MASK] written by hand: each stretch between masks encoded alone."""
  ids, positions = [], []
  for k, stretch in enumerate(text.split("[MASK]")):
    if k:
      positions.append(len(ids))
      ids.append(tokenizer.mask_id)
    ids += tokenizer.encode([stretch.strip()])[0] if stretch.strip() else []
  return ids, positions


@pytest.fixture(scope="module")
def bert(tmp_path_factory):
  overrides = demo_overrides(tmp_path_factory)
  config = config_lib.load_config("bert_tiny", overrides)
  tokenizer = tokenizer_lib.load(config.data.tokenizer)
  trainer = Trainer(config)
  return config, overrides, tokenizer, trainer, trainer.init_state()


def test_fill_mask_equals_a_direct_apply(bert):
  config, _, tokenizer, trainer, state = bert
  records = Predictor(trainer, state.params, tokenizer, "test")(TEXTS, top_k=4)
  params = jax.device_get(state.params)
  for text, record in zip(TEXTS, records):
    ids, positions = encoded(tokenizer, text)
    model_ids = np.array([[tokenizer.cls_id, *ids, tokenizer.sep_id]], np.int32)
    logits = jax.jit(trainer.eval_model.apply)({"params": params}, model_ids, np.zeros_like(model_ids),
                                               np.ones_like(model_ids), np.array([positions]) + 1)["mlm_logits"][0]
    probs = softmax(logits)
    assert len(record["predictions"]) == len(positions) == text.count("[MASK]")
    for p, prediction in enumerate(record["predictions"]):
      top = np.argsort(-probs[p])[:4]
      assert [c["id"] for c in prediction["candidates"]] == top.tolist()
      np.testing.assert_allclose([c["probability"] for c in prediction["candidates"]], probs[p, top], rtol=1e-4)
    fills = iter(tokenizer.decode([int(np.argmax(probs[p]))]).strip() for p in range(len(positions)))
    assert record["output"] == " ".join(text.replace("[MASK]", "{}").format(*fills).split())


def favour(params, piece: int):
  """The MLM head's bias raised on `piece`, so that it wins at every [MASK]."""
  params = jax.tree_util.tree_map(np.asarray, jax.device_get(params))
  params["mlm_head"]["bias"] = params["mlm_head"]["bias"].copy()
  params["mlm_head"]["bias"][piece] = 100.0
  return params


@pytest.fixture(scope="module")
def run_with_a_favoured_piece(bert, tmp_path_factory):
  """A workdir as `bert-jax train` leaves it (config.json, checkpoint 3), whose model puts `piece` at every mask."""
  config, _, tokenizer, trainer, state = bert
  piece = next(i for i in range(tokenizer.piece_count) if tokenizer.decode([i]).isalpha()
               and len(tokenizer.decode([i])) >= 4 and tokenizer.encode([tokenizer.decode([i])])[0] == [i])
  workdir = tmp_path_factory.mktemp("predict_run")
  save_config(config, str(workdir))
  params = jax.device_put(favour(state.params, piece), trainer.param_shardings)
  checkpoints = checkpoint.Checkpoints(workdir, config)
  checkpoints.save(3, state.replace(step=jnp.asarray(3, jnp.int32), params=params), trainer.batches(str(workdir), 3))
  checkpoints.close()
  return workdir, tokenizer.decode([piece]), params


def test_cli_from_a_workdir_prints_the_favoured_piece(run_with_a_favoured_piece, tmp_path, capsys):
  workdir, piece, _ = run_with_a_favoured_piece
  inputs = tmp_path / "inputs.txt"
  inputs.write_text("a [MASK] day\n\n[MASK] and [MASK]\n")
  capsys.readouterr()
  assert cli.main(["predict", "--workdir", str(workdir), "--text", "the [MASK] of the city", "--top-k", "2"]) == 0
  out = capsys.readouterr().out.splitlines()
  assert out[:2] == ["> the [MASK] of the city", f"  the {piece} of the city"]
  assert out[2].startswith(f"  [MASK] 1: {piece!r} 1.000, ")
  assert cli.main(["predict", "--workdir", str(workdir), "--file", str(inputs), "--json", "--step", "3"]) == 0
  records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
  assert [r["output"] for r in records] == [f"a {piece} day", f"{piece} and {piece}"]
  assert all(len(p["candidates"]) == 5 and p["text"] == piece for r in records for p in r["predictions"])


def test_cli_from_a_converted_directory_gives_what_the_workdir_gives(run_with_a_favoured_piece, bert, tmp_path,
                                                                      capsys):
  """Our parameters exported to Hugging Face files, imported with `bert-jax convert --from-hf`, then predicted."""
  workdir, piece, params = run_with_a_favoured_piece
  config, _, tokenizer, _, _ = bert
  weights.write_hf_dir(tmp_path / "hf", *convert.to_hf(config.model, jax.device_get(params)))
  assert cli.main(["convert", "--from-hf", str(tmp_path / "hf"), "--output", str(tmp_path / "converted")]) == 0
  capsys.readouterr()
  argv = ["--text", TEXTS[1], "--json"]
  assert cli.main(["predict", "--model", str(tmp_path / "converted"), "--tokenizer", tokenizer.path, *argv]) == 0
  converted = json.loads(capsys.readouterr().out)
  assert cli.main(["predict", "--workdir", str(workdir), *argv]) == 0
  from_run = json.loads(capsys.readouterr().out)
  assert converted["output"] == from_run["output"] == f"{piece} was a {piece} man ."
  for a, b in zip(converted["predictions"], from_run["predictions"]):
    assert [c["id"] for c in a["candidates"]] == [c["id"] for c in b["candidates"]]
    np.testing.assert_allclose([c["probability"] for c in a["candidates"]],
                               [c["probability"] for c in b["candidates"]], rtol=1e-4, atol=1e-9)


def test_xlnet_guesses_equal_a_direct_apply_with_perm_mask_and_target_mapping(bert):
  _, overrides, tokenizer, _, _ = bert
  config = config_lib.load_config("xlnet_tiny", [o for o in overrides if o.startswith(("data.", "model.vocab"))]
                                  + ["objective.num_predict=5", "model.reuse_len=16", "objective.perm_size=8"])
  trainer = Trainer(config)
  params = trainer.init_state().params
  predictor = Predictor(trainer, params, tokenizer, "test")
  records = predictor(TEXTS, top_k=3)
  params = jax.device_get(params)
  for text, record in zip(TEXTS, records):
    ids, positions = encoded(tokenizer, text)
    model_ids = np.array([[*ids, tokenizer.sep_id, tokenizer.cls_id]], np.int32)
    types = np.array([[0] * (len(ids) + 1) + [2]], np.int32)
    # Hugging Face's recipe (XLNetLMHeadModel's docstring): no position may see a masked token, and the target
    # mapping picks the masked positions (here as their indices).
    perm_mask = np.zeros((1, model_ids.shape[1], model_ids.shape[1]), np.float32)
    perm_mask[:, :, positions] = 1.0

    apply = jax.jit(trainer.eval_model.apply)

    def logits_of(model_ids):
      return apply({"params": params}, model_ids, types, None, perm_mask, np.array([positions]))["logits"][0]

    probs = softmax(logits_of(model_ids))
    for p, prediction in enumerate(record["predictions"]):
      top = np.argsort(-probs[p])[:3]
      assert [c["id"] for c in prediction["candidates"]] == top.tolist()
      np.testing.assert_allclose([c["probability"] for c in prediction["candidates"]], probs[p, top], rtol=1e-4)
    # Targets see all the text and no target: the token under a mask plays no part; any other token does.
    hidden = model_ids.copy()
    hidden[0, positions] = tokenizer.encode(["city"])[0][0]
    np.testing.assert_allclose(logits_of(hidden), logits_of(model_ids), atol=1e-5)
    other = model_ids.copy()
    other[0, len(ids)] = tokenizer.cls_id  # the [SEP] after the text
    assert np.abs(np.asarray(logits_of(other)) - np.asarray(logits_of(model_ids))).max() > 1e-4


@pytest.fixture(scope="module")
def t5_tokenizer(bert, tmp_path_factory):
  from bert_jax.data.sources import Source

  config, *_ = bert
  path = tmp_path_factory.mktemp("t5_tokenizer") / "spm.model"
  return tokenizer_lib.train(Source(config.data).sentences(), path, 1000, extra_ids=100, pad_id=0)


def greedy(model, params, inputs, length: int, eos: int) -> list[int]:
  """Greedy decoding by hand: the whole model run again for each new token (the decoder input the tokens so far,
  zeros after them, which the causal mask hides), until EOS."""
  logits = jax.jit(lambda decoder_inputs: model.apply({"params": params}, inputs, decoder_inputs))
  out = []
  for t in range(length):
    decoder_inputs = np.zeros((1, length), np.int32)
    decoder_inputs[0, 1:t + 1] = out
    out.append(int(np.argmax(logits(decoder_inputs)[0, t])))
    if out[-1] == eos:
      break
  return out


def test_t5_span_infilling_equals_a_greedy_decode(bert, t5_tokenizer):
  config = config_lib.load_config("t5_tiny", ["model.vocab_size=1100", "data.extra_ids=100"])
  trainer = Trainer(config)
  state = trainer.init_state()
  texts = ["the <extra_id_0> of the <extra_id_1> city", "<extra_id_0> was a man"]
  predictor = Predictor(trainer, state.params, t5_tokenizer, "test")
  records = predictor(texts)
  with pytest.raises(UserError, match=r"<extra_id_100> is not a sentinel of this tokenizer \(it has <extra_id_0> to "
                                      r"<extra_id_99>"):
    predictor(["a <extra_id_100> b"])
  with pytest.raises(UserError, match=r"input 1 \('a b'\) has no <extra_id_0>; write <extra_id_0> where"):
    predictor(["a b"])
  params = jax.device_get(state.params)
  for text, record in zip(texts, records):
    ids = []
    for k, stretch in enumerate(blanks.SENTINEL_MARKER.split(text)):
      ids += [t5_tokenizer.sentinel_id(int(stretch))] if k % 2 else (
          t5_tokenizer.encode([stretch.strip()])[0] if stretch.strip() else [])
    decoded = greedy(trainer.eval_model, params, np.array([ids + [1]], np.int32), config.objective.targets_length, 1)
    assert record == blanks.fill_spans(text, t5_tokenizer, decoded, 1)
    assert [p["blank"] for p in record["predictions"]] == [f"<extra_id_{n}>" for n in range(text.count("<extra"))]


def test_spans_fill_their_sentinels(bert, t5_tokenizer):
  tok = t5_tokenizer
  dog, park = tok.encode(["big dog"])[0], tok.encode(["green park"])[0]
  decoded = [tok.sentinel_id(0), *dog, tok.sentinel_id(1), *park, 1, tok.sentinel_id(2), 5]
  record = blanks.fill_spans("a <extra_id_0> in the <extra_id_1> <extra_id_2> today", tok, decoded, 1)
  assert record["output"] == "a big dog in the green park today"
  assert record["predictions"] == [{"blank": "<extra_id_0>", "text": "big dog"},
                                   {"blank": "<extra_id_1>", "text": "green park"},
                                   {"blank": "<extra_id_2>", "text": ""}]


def test_bad_input_is_one_clear_line(run_with_a_favoured_piece, bert, tmp_path, capsys, monkeypatch):
  workdir, _, _ = run_with_a_favoured_piece
  run = ["predict", "--workdir", str(workdir)]
  assert "input 2 ('no blank here') has no [MASK]" in error_line(capsys, run + ["--text", "a [MASK]", "--text",
                                                                               "no blank here"])
  long = "word " * 200 + "[MASK]"
  assert "more than the model's 128 positions; shorten it" in error_line(capsys, run + ["--text", long])
  assert "no input: give --text" in error_line(capsys, run)
  assert "--tokenizer goes with --model" in error_line(capsys, run + ["--text", "[MASK]", "--tokenizer", "t.model"])
  assert "--step and --config go with --workdir" in error_line(capsys, ["predict", "--model", str(tmp_path),
                                                                         "--step", "3", "--text", "[MASK]"])
  assert "config.py not found; --model must be" in error_line(capsys, ["predict", "--model", str(tmp_path),
                                                                        "--text", "[MASK]"])
  assert "no checkpoint of step 9" in error_line(capsys, run + ["--text", "[MASK]", "--step", "9"])
  empty = tmp_path / "empty_run"
  save_config(bert[0], str(empty))
  (empty / "checkpoints").mkdir()
  assert "no checkpoints in" in error_line(capsys, ["predict", "--workdir", str(empty), "--text", "[MASK]"])
  assert "config.json not found" in error_line(capsys, ["predict", "--workdir", str(tmp_path), "--text", "[MASK]"])
  monkeypatch.delattr(MaskedLM, "predict")
  assert "objective masked_lm has no predict support" in error_line(capsys, run + ["--text", "[MASK]"])


def test_bart_rewrites_masked_text_as_transformers_greedy_generate(bert, tmp_path_factory):
  """BART's mask infilling: our greedy decode of the <s> text </s> row equals transformers' greedy `generate` on the
  same (perturbed) weights, and the record aligns each blank with what the rewrite put there."""
  import torch
  import transformers

  from bert_jax.data.sources import Source

  config, *_ = bert
  path = tmp_path_factory.mktemp("bart_tokenizer") / "spm.model"
  tok = tokenizer_lib.train(Source(config.data).sentences(), path, 1000, pad_id=1)  # bart_tiny's ids: </s> 0, <s> 3
  trainer = Trainer(config_lib.load_config("bart_tiny", ["model.vocab_size=1000"]))
  keys = iter(jax.random.split(jax.random.key(7), 1000))
  params = jax.tree.map(lambda x: x + 0.3 * jax.random.normal(next(keys), x.shape), trainer.init_state().params)
  texts = ["the [MASK] of the city", "[MASK] was a man [MASK] ."]
  records = Predictor(trainer, params, tok, "test")(texts)

  hf_config, state_dict = convert.to_hf(trainer.config.model, jax.device_get(params))
  hf = transformers.BartForConditionalGeneration(transformers.BartConfig(**hf_config)).eval()
  hf.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in state_dict.items()}, strict=False)
  encoded = [blanks.encode(tok, text, blanks.MASK_MARKER, lambda _: tok.mask_id, "<mask>", 0)[0] for text in texts]
  length = min(64, 2 * max(len(ids) + 2 for ids in encoded) + 16)  # predict's: the batch's, within 64 positions
  for text, ids, record in zip(texts, encoded, records):
    row = torch.tensor([[3, *ids, 0]])
    with torch.no_grad():
      generated = hf.generate(row, attention_mask=torch.ones_like(row), do_sample=False, num_beams=1,
                              max_length=length + 1, decoder_start_token_id=0, eos_token_id=0,
                              pad_token_id=1, forced_bos_token_id=None, forced_eos_token_id=None, min_length=0,
                              no_repeat_ngram_size=0)[0].tolist()
    rewrite = generated[1:]  # after the decoder's start
    rewrite = rewrite[:rewrite.index(0)] if 0 in rewrite else rewrite
    rewrite = rewrite[1:] if rewrite[:1] == [3] else rewrite
    assert record == blanks.fill_rewritten(text, tok, ids, rewrite, tok.mask_id)
    assert [p["blank"] for p in record["predictions"]] == ["[MASK]"] * text.count("[MASK]")


def test_greedy_decode_feeds_each_token_back_from_the_start_token():
  """A stand-in encoder-decoder whose next token is 3 x its input token + the encoder's first token (mod 11): the decode
  is that recurrence from the start token, and a row's tokens after its EOS are 0."""
  from bert_jax.objectives.decoding import greedy_decode

  class Recurrence:
    def apply(self, variables, *args, method):
      if method == "encode":
        tokens_BL, _ = args
        return tokens_BL[:, :1]
      encoded_B1, decoder_in_BT = args[:2]
      return jax.nn.one_hot((3 * decoder_in_BT + encoded_B1) % 11, 11)

  decoded = np.asarray(greedy_decode(Recurrence(), {}, np.array([[4, 9], [5, 9]]), np.ones((2, 2)), 8, eos_id=7,
                                     start_id=2))
  expected = []
  for first in (4, 5):
    token, row = 2, []
    while len(row) < 8 and 7 not in row:
      token = (3 * token + first) % 11
      row.append(token)
    expected.append(row + [0] * (8 - len(row)))
  assert decoded.tolist() == expected
  assert expected[0][:4] == [10, 1, 7, 0] and 7 not in expected[1]  # row 0 reaches EOS, row 1 runs the length


def test_a_rewrite_fills_each_blank_with_what_it_put_there():
  class Pieces:  # one character a piece
    decode = staticmethod(lambda ids: "".join(chr(i) for i in ids))

  source = [ord(c) for c in "ab"] + [0] + [ord(c) for c in "cd"] + [0]
  record = blanks.fill_rewritten("ab<mask>cd<mask>", Pieces, source, [ord(c) for c in "abXYcd"], 0)
  assert record["output"] == "abXYcd"
  assert [p["text"] for p in record["predictions"]] == ["XY", ""]  # the second span dropped
