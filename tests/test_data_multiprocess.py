"""Two processes (process_index 0 and 1 of 2) reading the same prepared corpus see disjoint examples that
together cover it. Every sentence of the corpus names its document, so an example tells where it came from."""

import json
import os
from pathlib import Path
import subprocess
import sys

from data_helpers import WORDS, tiny_config
import numpy as np
import pytest

from bert_jax.data import pipeline

DOCUMENTS = 40
OVERRIDES = ["model.vocab_size=80", "data.shards=4", "data.eval_documents=4", "train.batch_size=32"]

READER = """
import json, re, sys
sys.path.insert(0, {tests!r})
import numpy as np
import pytest
from bert_jax.objectives import get_objective
from bert_jax.data import pipeline
from data_helpers import originals, tiny_config
config = tiny_config("bert_tiny", *{overrides!r})
tokenizer = pipeline.load_tokenizer(config, {workdir!r})
seen = set()
for batch in pipeline.train_dataset(config, get_objective(config), {workdir!r}, {index}, 2).take(8).as_numpy_iterator():
  assert batch["input_ids"].shape == (16, 64)
  for ids in originals(batch):
    segments = np.split(ids, np.flatnonzero(ids == tokenizer.sep_id))
    for segment in segments:
      seen.update(int(d) for d in re.findall(r"document (\\d+) sentence", tokenizer.decode(segment)))
print(json.dumps(sorted(seen)))
"""


@pytest.mark.slow
def test_two_processes_see_disjoint_examples_that_cover_the_corpus(tmp_path):
  rng = np.random.default_rng(0)
  lines = []
  for d in range(DOCUMENTS):
    lines += [f"document {d} sentence {s} " + " ".join(rng.choice(WORDS, 5)) + "." for s in range(5)] + [""]
  (tmp_path / "corpus.txt").write_text("\n".join(lines))
  config = tiny_config("bert_tiny", f"data.source={tmp_path / 'corpus.txt'}", *OVERRIDES)
  pipeline.prepare_if_needed(config, tmp_path / "w")
  tests = str(Path(__file__).parent)
  env = {**os.environ, "JAX_PLATFORMS": "cpu"}
  readers = [subprocess.Popen([sys.executable, "-c", READER.format(
      tests=tests, overrides=[f"data.source={tmp_path / 'corpus.txt'}", *OVERRIDES], workdir=str(tmp_path / "w"),
      index=i)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env) for i in range(2)]
  seen = []
  for reader in readers:
    out, err = reader.communicate(timeout=300)
    assert reader.returncode == 0, err[-2000:]
    seen.append(set(json.loads(out.strip().splitlines()[-1])))
  assert not seen[0] & seen[1]
  assert seen[0] | seen[1] == set(range(4, DOCUMENTS))  # the first 4 documents are held out for evaluation
  assert len(seen[0]) == len(seen[1]) == (DOCUMENTS - 4) // 2
