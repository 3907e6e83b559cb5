"""Text sources: BERT's sentence-per-line files, document-per-line files, JSON lines, globs and directories,
TFDS (prepared locally), the built-in demo corpus, and the errors for bad input."""

import json

from data_helpers import data_config
import pytest

from bert_jax.data.sources import Source, split_sentences
from bert_jax.errors import UserError


def test_sentence_per_line_files(tmp_path):
  (tmp_path / "a.txt").write_text("First sentence.\nSecond one.\n\n\nOther document.\n")
  (tmp_path / "b.txt").write_text("\ufeffThird document, one line.\n")
  source = Source(data_config(str(tmp_path / "*.txt")))
  assert list(source.documents()) == [["First sentence.", "Second one."], ["Other document."],
                                      ["Third document, one line."]]
  assert [p.name for p in Source(data_config(str(tmp_path))).files] == ["a.txt", "b.txt"]


def test_document_per_line_and_sentence_splitting(tmp_path):
  (tmp_path / "docs.txt").write_text("One. Two!  Three? Four\nFive.\n\n北京是首都。天气很好！\n")
  documents = list(Source(data_config(str(tmp_path / "docs.txt"), text_format="documents")).documents())
  assert documents == [["One.", "Two!", "Three?", "Four"], ["Five."], ["北京是首都。", "天气很好！"]]
  assert split_sentences("a b.\nc d") == ["a b.", "c d"]


def test_json_lines(tmp_path):
  records = [{"body": "Line one. Line two.", "id": 1}, {"body": "Another\nparagraph here."}]
  (tmp_path / "c.jsonl").write_text("\n".join(json.dumps(r) for r in records) + "\n\n")
  source = Source(data_config(f"jsonl:{tmp_path}/*.jsonl", jsonl_field="body"))
  assert list(source.documents()) == [["Line one.", "Line two."], ["Another", "paragraph here."]]
  with pytest.raises(UserError, match=r"c.jsonl:1 has no text field 'text'"):
    list(Source(data_config(f"jsonl:{tmp_path}/c.jsonl")).documents())
  (tmp_path / "bad.jsonl").write_text('{"text": "fine"}\n{"text": \n')
  with pytest.raises(UserError, match=r"bad.jsonl:2 is not valid JSON"):
    list(Source(data_config(f"jsonl:{tmp_path}/bad.jsonl")).documents())


def test_lines_that_are_not_utf8_are_skipped_and_counted(tmp_path):
  (tmp_path / "mixed.txt").write_bytes(b"good line\n" + b"caf\xe9 latin-1\n" + b"\xff\xfe\n" + b"last\n")
  source = Source(data_config(str(tmp_path / "mixed.txt")))
  assert list(source.documents()) == [["good line", "last"]]
  assert source.skipped_lines == 2
  assert source.skipped_report() == ("warning: skipped 2 line(s) that are not valid UTF-8 "
                                     f"(the first at {tmp_path}/mixed.txt:2)")


def test_missing_path_and_bad_settings(tmp_path):
  with pytest.raises(UserError, match="matches no files"):
    Source(data_config(str(tmp_path / "nothing*.txt")))
  with pytest.raises(UserError, match="matches no files"):
    Source(data_config(f"jsonl:{tmp_path}/missing.jsonl"))
  with pytest.raises(UserError, match="text_format"):
    Source(data_config("demo", text_format="paragraphs"))


def test_demo_corpus():
  documents = list(Source(data_config("demo")).documents())
  assert len(documents) > 300 and sum(map(len, documents)) > 5000
  assert documents[0][0] == 'The "assert" statement'
  assert all(document and all(s.strip() == s and s for s in document) for document in documents)


def test_tfds_not_prepared(tmp_path):
  with pytest.raises(UserError, match=r"not prepared in .*tfds build wikipedia/20230601.en --data_dir"):
    Source(data_config("tfds:wikipedia/20230601.en", tfds_data_dir=str(tmp_path)))
  with pytest.raises(UserError, match="TFDS has no dataset named 'no_such_corpus'"):
    Source(data_config("tfds:no_such_corpus", tfds_data_dir=str(tmp_path)))


def test_tfds_prepared_locally(tmp_path):
  import tensorflow as tf
  import tensorflow_datasets as tfds

  texts = tf.data.Dataset.from_tensor_slices({"text": ["Alpha beta. Gamma delta.", "Second document."]})
  tfds.dataset_builders.TfDataBuilder(
      name="tiny_corpus", version="1.0.0", split_datasets={"train": texts}, data_dir=str(tmp_path),
      features=tfds.features.FeaturesDict({"text": tfds.features.Text()})).download_and_prepare()
  source = Source(data_config("tfds:tiny_corpus", tfds_data_dir=str(tmp_path)))
  assert sorted(source.documents()) == [["Alpha beta.", "Gamma delta."], ["Second document."]]
  with pytest.raises(UserError, match="no feature 'body'"):
    list(Source(data_config("tfds:tiny_corpus", tfds_data_dir=str(tmp_path), jsonl_field="body")).documents())
  with pytest.raises(UserError, match="no split 'validation'"):
    list(Source(data_config("tfds:tiny_corpus", tfds_data_dir=str(tmp_path), tfds_split="validation")).documents())
