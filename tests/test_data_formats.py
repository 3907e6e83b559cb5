"""Document layouts of text files (one document per file; PDF-style double spacing) and the eval split set in
tokens rather than documents."""

from data_helpers import data_config, tiny_config
import numpy as np
import pytest

from bert_jax.data import pipeline, prepare, tokenizer as tokenizer_lib
from bert_jax.data.sources import Source
from bert_jax.errors import UserError

ANIMALS = "cat dog fox owl bee ant elk yak emu cow pig hen ram eel bat gnu".split()


def test_one_document_per_file(tmp_path):
  (tmp_path / "a.txt").write_text("第一份调查报告。结果如下：\n\n城市居民的比例上升。\n\n\n")
  (tmp_path / "b.txt").write_text("Second file. Its second sentence\ncontinues here.\n")
  (tmp_path / "c.txt").write_text("\n \n")
  documents = list(Source(data_config(str(tmp_path), text_format="files")).documents())
  assert documents == [["第一份调查报告。", "结果如下：", "城市居民的比例上升。"],
                       ["Second file.", "Its second sentence", "continues here."]]


def double_spaced(documents: list[list[str]]) -> str:
  """Text as PDF extraction writes it: a blank line after every line, three between documents."""
  return "\n\n\n".join("".join(line + "\n\n" for line in lines) for lines in documents)


def test_double_spaced_text(tmp_path):
  lines = [[f"Document {d} line {i}. It goes on" for i in range(3)] for d in range(6)]
  lines[1][1] = "问卷共收集三千份。结果如下"
  (tmp_path / "pdf.txt").write_text(double_spaced(lines))
  source = Source(data_config(str(tmp_path / "pdf.txt"), text_format="double_spaced"))
  documents = list(source.documents())
  assert len(documents) == 6
  assert documents[0] == [s for i in range(3) for s in (f"Document 0 line {i}.", "It goes on")]
  assert documents[1][2:4] == ["问卷共收集三千份。", "结果如下"]
  assert source.layout_hint() is None
  # Read as BERT's sentence-per-line files, every line is a document, and the pass says what to set.
  sentences = Source(data_config(str(tmp_path / "pdf.txt")))
  assert len(list(sentences.documents())) == 18
  assert "18 of the 18 documents are one line each" in sentences.layout_hint()
  assert "data.text_format=double_spaced" in sentences.layout_hint()
  with pytest.raises(UserError, match="data.text_format must be one of sentences, double_spaced, documents, files"):
    Source(data_config(str(tmp_path / "pdf.txt"), text_format="pdf"))


@pytest.fixture
def corpus(tmp_path):
  rng = np.random.default_rng(0)
  documents = [[" ".join(rng.choice(ANIMALS, rng.integers(3, 9))) + "." for _ in range(rng.integers(2, 7))]
               for _ in range(30)]
  (tmp_path / "corpus.txt").write_text("\n\n".join("\n".join(d) for d in documents) + "\n")
  return tmp_path / "corpus.txt"


def config_for(corpus, *overrides):
  return tiny_config("bert_tiny", f"data.source={corpus}", "model.vocab_size=40", "data.shards=3", *overrides)


def test_eval_split_in_tokens(corpus, tmp_path):
  """The eval split is the first eval_tokens tokens, in whole sentences; the document it ends in goes on in the
  training split; nothing is lost or repeated."""
  config = config_for(corpus, "data.eval_tokens=100")
  workdir = tmp_path / "w"
  metadata = pipeline.prepare_if_needed(config, workdir)
  tokenizer = pipeline.load_tokenizer(config, workdir)
  sentences = [tokenizer.encode(d) for d in Source(config.data).documents()]
  read = {split: list(pipeline.documents(config, workdir, split).as_numpy_iterator()) for split in ("eval", "train")}
  held = [np.split(d["token_ids"], np.cumsum(d["sentence_lengths"])[:-1]) for d in read["eval"]]
  held = [s.tolist() for d in held for s in d]
  flat = [s for d in sentences for s in d]
  assert held == flat[:len(held)]
  tokens = sum(len(s) for s in held)
  assert tokens >= 100 and tokens - len(held[-1]) < 100
  assert sum(s["tokens"] for s in metadata["splits"]["eval"]) == tokens
  total = sum(len(s) for s in flat)
  assert sum(s["tokens"] for s in metadata["splits"]["train"]) == total - tokens
  cut = next(i for i in range(len(sentences)) if sum(len(s) for d in sentences[:i + 1] for s in d) >= tokens)
  rest = [t for s in sentences[cut][len(held) - sum(len(d) for d in sentences[:cut]):] for t in s]
  assert rest and read["train"][0]["token_ids"].tolist() == rest  # the document cut at the eval split's end
  assert len(read["eval"]) == cut + 1 and len(read["train"]) == len(sentences) - cut

  # The older setting still holds out whole documents; changing the split is a change of settings.
  by_documents = config_for(corpus, "data.eval_documents=4")
  assert [s["documents"] for s in pipeline.prepare_if_needed(by_documents, tmp_path / "d")["splits"]["eval"]] == \
      [2, 1, 1]
  with pytest.raises(UserError, match=r"other settings \(eval_tokens differ\)"):
    pipeline.prepare_if_needed(config_for(corpus, "data.eval_tokens=200"), workdir)


def test_eval_split_errors(corpus, tmp_path):
  config = config_for(corpus, "data.eval_tokens=100000")
  tokenizer = tokenizer_lib.train_for_config(config, Source(config.data), tmp_path / "t.model")
  with pytest.raises(UserError, match=r"all 30 documents are held out .*lower data.eval_tokens"):
    prepare.prepare(config, Source(config.data), tokenizer, tmp_path / "all")
  with pytest.raises(UserError, match="data.eval_tokens and data.eval_documents not negative"):
    prepare.prepare(config_for(corpus, "data.eval_tokens=-1"), Source(config.data), tokenizer, tmp_path / "neg")
  none = config_for(corpus, "data.eval_tokens=0")
  pipeline.prepare_if_needed(none, tmp_path / "w")
  with pytest.raises(UserError, match="no eval documents; set data.eval_tokens > 0"):
    pipeline.documents(none, tmp_path / "w", "eval")
