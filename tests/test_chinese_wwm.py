"""Chinese whole-word masking (BERT-wwm: Cui et al. 2019): words from jieba over the text, found at prepare time
and stored with the tokens; every masked word masked whole, punctuation a word of its own, the budget kept.
The corpus is 41 Chinese sentences (about 2.8 KB) written here, in documents of five sentences."""

import logging
import unicodedata

from data_helpers import originals, take, tiny_config
import numpy as np
import pytest

from bert_jax.data import pipeline, tokenizer as tokenizer_lib
from bert_jax.errors import UserError
from bert_jax.objectives import get_objective

SENTENCES = [
    "自然语言处理是人工智能领域中一个重要的研究方向。",
    "近年来，基于大规模语料的预训练模型取得了显著的进展。",
    "研究人员发现，在中文文本上使用全词掩码能够提高模型的表现。",
    "与英文不同，中文的词语之间没有空格，因此需要先进行分词。",
    "我们在北京大学的图书馆里阅读了许多关于语言学的书籍。",
    "这项调查共收集了三千二百份问卷，覆盖全国二十个省份。",
    "受访者中，有超过一半的人表示每天使用手机阅读新闻。",
    "老师问道：“你们今天的作业完成了吗？”",
    "学生们回答：“已经完成了，请您检查！”",
    "春天来了，公园里的桃花和杏花都开了。",
    "他喜欢在周末去郊区爬山，呼吸新鲜的空气。",
    "经济学家认为，消费结构的变化将影响未来的市场需求。",
    "今年的物价上涨了3.5%，程序员们用C++编写了新的系统。",
    "政府发布了新的政策，鼓励企业加大科技创新的投入。",
    "这座城市的交通状况在过去十年里得到了明显改善。",
    "根据统计数据，农村地区的互联网普及率正在快速上升。",
    "《红楼梦》是中国古典文学中最著名的长篇小说之一。",
    "医生建议病人多喝水、多休息，并按时服用药物。",
    "在实验中，我们比较了三种不同的训练方法（见表二）。",
    "结果表明：第一种方法的准确率最高，第二种方法的速度最快。",
    "然而，这些结论还需要在更大的数据集上进一步验证。",
    "我的朋友刚刚从上海回来，给我带了一些点心。",
    "晚上的音乐会非常精彩，观众们报以热烈的掌声。",
    "孩子们在操场上踢足球，笑声传遍了整个校园。",
    "为了保护环境，我们应该减少塑料制品的使用。",
    "这家公司成立于一九九八年，目前拥有五千多名员工。",
    "专家指出，人口老龄化是社会发展面临的重要挑战。",
    "你知道明天的会议几点开始吗？",
    "请把这份文件交给办公室的王主任。",
    "图书馆每周一闭馆，其余时间正常开放。",
    "他们花了整整三个月的时间，终于完成了这个项目……",
    "历史学家对这段时期的记载进行了详细的考证。",
    "山区的气候变化多端，早晚温差比较大。",
    "这本教材的内容包括语音、词汇、语法和写作四个部分。",
    "她一边听广播，一边准备晚饭——厨房里飘出了阵阵香味。",
    "调查显示，大多数家长关心孩子的睡眠和营养问题。",
    "机器翻译系统的质量在很大程度上取决于训练数据的规模。",
    "我们计划下个月去西安参观兵马俑和古城墙。",
    "市场上的蔬菜价格最近有所下降，水果价格却上涨了。",
    "科学家们正在研究如何利用太阳能和风能发电。",
    "只要坚持努力，就一定能够实现自己的梦想！",
]
DOCUMENT_SENTENCES = 5


def jieba_starts(sentence: str) -> np.ndarray:
  """Per character, 1 where a word begins: at each of jieba's words, and at and after every punctuation mark
  (jieba keeps some in words: "3.5%", "C++")."""
  import jieba

  jieba.setLogLevel(logging.WARNING)
  starts = np.zeros(len(sentence), np.int32)
  at = 0
  for word in jieba.lcut(sentence):
    starts[at] = 1
    at += len(word)
  assert at == len(sentence)
  for i, char in enumerate(sentence):
    if is_punctuation(char):
      starts[i:i + 2] = 1
  return starts


def is_punctuation(char: str) -> bool:
  return unicodedata.category(char)[0] in "PS" or (char.isascii() and not char.isalnum())


def prepared(tmp_path_factory, model_type: str, vocab_size: int, *overrides: str):
  """(config, workdir, tokenizer) with the corpus prepared with jieba's word starts."""
  directory = tmp_path_factory.mktemp(f"zh_{model_type}")
  corpus = directory / "zh.txt"
  corpus.write_text("\n\n".join("\n".join(SENTENCES[i:i + DOCUMENT_SENTENCES])
                                 for i in range(0, len(SENTENCES), DOCUMENT_SENTENCES)) + "\n")
  tokenizer = tokenizer_lib.train(SENTENCES, directory / "zh.model", vocab_size, model_type=model_type,
                                  character_coverage=1.0)
  config = tiny_config("bert_tiny", f"data.source={corpus}", f"data.tokenizer={directory / 'zh.model'}",
                       f"model.vocab_size={tokenizer.vocab_size}", "data.shards=2", "data.eval_tokens=100",
                       "data.word_segmenter=jieba", "objective.whole_word=true", *overrides)
  pipeline.prepare_if_needed(config, directory / "w")
  return config, directory / "w", tokenizer


def documents(config, workdir) -> list[dict]:
  return [d for split in ("eval", "train") for d in pipeline.documents(config, workdir, split).as_numpy_iterator()]


def sentences_of(document: dict):
  ends = np.cumsum(document["sentence_lengths"])
  for start, end in zip(ends - document["sentence_lengths"], ends):
    yield document["token_ids"][start:end], document["word_starts"][start:end]


@pytest.fixture(scope="module")
def characters(tmp_path_factory):
  return prepared(tmp_path_factory, "character", 2000, "objective.sentence_task=none", "objective.short_seq_prob=0")


def test_prepared_word_starts_are_jiebas(characters):
  """One piece per character: the stored flags are exactly jieba's word starts (punctuation cut out)."""
  config, workdir, tokenizer = characters
  seen = []
  for document in documents(config, workdir):
    for ids, starts in sentences_of(document):
      text = "".join(tokenizer.processor.id_to_piece(int(i)) for i in ids)
      seen.append(text)
      np.testing.assert_array_equal(starts, jieba_starts(text), err_msg=text)
  assert sorted(seen) == sorted(SENTENCES)


def test_masked_words_are_whole_and_budget_kept(characters):
  """Masked-LM batches: each masked word has all its characters masked (by jieba's words of the same text), no
  multi-character unit holds punctuation, and each sequence masks round(15%) of its tokens, or fewer only
  where a whole word would overshoot."""
  config, workdir, tokenizer = characters
  flags = {}  # the corpus' text, sentence by sentence, with jieba's word starts
  for sentence in SENTENCES:
    flags[sentence] = jieba_starts(sentence)
  text = "".join(SENTENCES)
  starts_of_text = np.concatenate([flags[s] for s in SENTENCES])
  stream = pipeline.documents(config, workdir, "train", shuffle=True)
  batch = take(get_objective(config).dataset(stream, tokenizer, 0, True).batch(32), 12)
  ids = originals(batch)
  masked, budget, words_masked, long_words, short_of_budget = 0, 0, 0, 0, 0
  for row in range(len(ids)):
    length = batch["attention_mask"][row].sum()
    chars = "".join(tokenizer.processor.id_to_piece(int(i)) for i in ids[row, 1:length - 1])
    at = text.find(chars)
    assert at >= 0, chars
    starts = starts_of_text[at:at + len(chars)].copy()
    starts[0] = 1  # a word cut by the sequence's edge: its part inside is the unit
    chosen = np.zeros(len(chars), bool)
    chosen[batch["masked_positions"][row][batch["masked_weights"][row] > 0] - 1] = True
    bounds = np.flatnonzero(starts).tolist() + [len(chars)]
    for begin, end in zip(bounds[:-1], bounds[1:]):
      assert chosen[begin:end].all() or not chosen[begin:end].any(), (chars[begin:end], chars)
      if end - begin > 1:
        assert not any(is_punctuation(c) for c in chars[begin:end]), chars[begin:end]
      if chosen[begin]:
        words_masked += 1
        long_words += end - begin > 1
    wanted = min(config.objective.max_predictions, max(1, round(0.15 * len(chars))))
    assert chosen.sum() <= wanted
    short_of_budget += chosen.sum() < wanted
    masked, budget = masked + chosen.sum(), budget + wanted
  assert masked / budget > 0.97, (masked, budget)
  assert short_of_budget < 0.15 * len(ids)
  assert long_words > 0.4 * words_masked, (long_words, words_masked)  # jieba's words, not single characters


def test_multi_character_pieces_never_split_a_word(tmp_path_factory):
  """A unigram tokenizer's pieces can span characters of two words; then the two words are one unit. Every
  token that continues a unit shares a jieba word with the token before it (or follows a lone "\u2581")."""
  config, workdir, tokenizer = prepared(tmp_path_factory, "unigram", 501)
  continued = 0
  for document in documents(config, workdir):
    for ids, starts in sentences_of(document):
      sentence = tokenizer.decode(ids)
      encoded = tokenizer.processor.encode(sentence, return_type="offset_mapping")
      assert encoded["ids"] == ids.tolist()
      cuts = np.flatnonzero(jieba_starts(sentence))
      word_of = np.searchsorted(cuts, np.arange(len(sentence)), side="right")
      pieces = [set(word_of[b:e]) for b, e in encoded["offsets"]]
      for k in range(len(pieces)):
        if k and pieces[k] and pieces[k - 1] and min(pieces[k]) <= max(pieces[k - 1]):
          assert starts[k] == 0, (sentence, k)  # it begins inside a word the token before reached
        if starts[k] == 0:
          continued += 1
          assert k > 0 and (not pieces[k - 1] or min(pieces[k]) <= max(pieces[k - 1])), (sentence, k)
  assert continued > 100


def test_imported_wordpiece_tokenizer_gets_jiebas_words():
  """A published Chinese BERT's WordPiece tokenizer (here one of the corpus' characters, built offline), as
  continued pretraining with whole-word masking uses it: the same flags from its offsets."""
  tokenizers = pytest.importorskip("tokenizers")
  from bert_jax.data import hf_tokenizer, words

  characters = sorted(set("".join(SENTENCES)))
  vocab = {piece: i for i, piece in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *characters])}
  wordpiece = tokenizers.Tokenizer(tokenizers.models.WordPiece(vocab, unk_token="[UNK]"))
  wordpiece.normalizer = tokenizers.normalizers.BertNormalizer(lowercase=False)
  wordpiece.pre_tokenizer = tokenizers.pre_tokenizers.BertPreTokenizer()
  ids, starts = words.encode(hf_tokenizer.HFTokenizer(wordpiece), SENTENCES)
  for sentence, sentence_ids, flags in zip(SENTENCES, ids, starts):
    assert sentence_ids == [vocab[char] for char in sentence]
    np.testing.assert_array_equal(flags, jieba_starts(sentence), err_msg=sentence)


def test_segmenter_settings_are_checked(tmp_path):
  with pytest.raises(UserError, match="set --config.objective.whole_word=true"):
    get_objective(tiny_config("bert_tiny", "data.word_segmenter=jieba"))
  config = tiny_config("bert_tiny", "data.word_segmenter=ltp", "objective.whole_word=true",
                       f"data.source={tmp_path}")
  (tmp_path / "a.txt").write_text("一句话。\n")
  with pytest.raises(UserError, match="data.word_segmenter must be one of pieces, jieba"):
    pipeline.prepare_if_needed(config, tmp_path / "w")
