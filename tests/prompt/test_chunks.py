"""75-token chunks: lengths 75/76/150, BREAK, comma backtrack, weights per token, padding per tokenizer."""

import pytest

from loradeck.prompt.chunks import CHUNK_LENGTH, Vocab, empty_chunk, pad_chunks, tokenize_prompt


def _text_tokens(chunk, vocab):
    """Tokens between BOS and the EOS that closes the text."""
    assert chunk.tokens[0] == vocab.bos
    body = chunk.tokens[1:]
    return body[: body.index(vocab.eos)]


@pytest.fixture
def v(clip_l):
    return Vocab.of(clip_l)


def test_vocab_from_the_tokenizer(clip_l, open_clip):
    a, b = Vocab.of(clip_l), Vocab.of(open_clip)
    assert a.pad == a.eos == clip_l.eos_token_id  # CLIP-L pads with EOS
    assert b.pad == 0 == open_clip.convert_tokens_to_ids("!")  # OpenCLIP pads with "!"
    assert a.comma == clip_l.convert_tokens_to_ids(",</w>")
    assert (a.bos, a.eos) == (clip_l.bos_token_id, clip_l.eos_token_id)


@pytest.mark.parametrize(
    "n, chunks, count", [(0, 1, 0), (1, 1, 1), (75, 1, 75), (76, 2, 76), (150, 2, 150), (151, 3, 151)]
)
def test_chunk_counts(clip_l, v, n, chunks, count):
    result = tokenize_prompt(" ".join(["cat"] * n), clip_l)
    assert len(result.chunks) == chunks and result.token_count == count
    cat = clip_l.convert_tokens_to_ids("cat</w>")
    texts = [_text_tokens(c, v) for c in result.chunks]
    assert sum(len(t) for t in texts) == n  # nothing dropped
    assert all(t == [cat] * len(t) for t in texts)
    for c in result.chunks:
        assert len(c.tokens) == len(c.weights) == CHUNK_LENGTH + 2


def test_matches_the_tokenizer_for_a_short_prompt(clip_l, open_clip):
    # one chunk of plain text = what tokenizer(padding="max_length", max_length=77) gives
    text = "a cat, a dog on the hill under the sky"
    for tok in (clip_l, open_clip):
        ref = tok(text, padding="max_length", max_length=77, truncation=True)["input_ids"]
        assert tokenize_prompt(text, tok).chunks[0].tokens == ref


def test_75_tokens_fill_one_chunk_exactly(clip_l, v):
    chunk = tokenize_prompt(" ".join(["dog"] * 75), clip_l).chunks[0]
    assert chunk.tokens[-1] == v.eos and chunk.tokens[-2] == clip_l.convert_tokens_to_ids("dog</w>")


def test_padding_after_eos_uses_the_pad_token(clip_l, open_clip):
    for tok, pad in ((clip_l, clip_l.eos_token_id), (open_clip, 0)):
        chunk = tokenize_prompt("cat", tok).chunks[0]
        assert chunk.tokens[:3] == [tok.bos_token_id, tok.convert_tokens_to_ids("cat</w>"), tok.eos_token_id]
        assert chunk.tokens[3:] == [pad] * 74


def test_weights_follow_tokens(clip_l, v):
    chunk = tokenize_prompt("a (cat:1.5) [dog]", clip_l).chunks[0]
    ids = _text_tokens(chunk, v)
    names = clip_l.convert_ids_to_tokens(ids)
    assert names == ["a</w>", "cat</w>", "dog</w>"]
    assert chunk.weights[:5] == [1.0, 1.0, 1.5, pytest.approx(1 / 1.1), 1.0]
    assert set(chunk.weights[5:]) == {1.0}


def test_words_split_by_brackets_are_tokenized_apart(clip_l, v):
    # A1111 tokenizes each weighted fragment on its own: "ho(use)" is "ho" + "use", not "house"
    chunk = tokenize_prompt("ho(use)", clip_l).chunks[0]
    assert clip_l.convert_ids_to_tokens(_text_tokens(chunk, v)) == ["h", "o</w>", "u", "s", "e</w>"]
    assert chunk.weights[1:6] == [1.0, 1.0, 1.1, 1.1, 1.1]


def test_break_pads_the_current_chunk(clip_l, v):
    result = tokenize_prompt("cat dog BREAK sky", clip_l)
    assert len(result.chunks) == 2
    assert clip_l.convert_ids_to_tokens(_text_tokens(result.chunks[0], v)) == ["cat</w>", "dog</w>"]
    assert clip_l.convert_ids_to_tokens(_text_tokens(result.chunks[1], v)) == ["sky</w>"]
    assert result.token_count == 75 + 1  # a BREAK counts its chunk as full


def test_leading_break_gives_an_empty_first_chunk(clip_l, v):
    result = tokenize_prompt("BREAK cat", clip_l)
    assert [len(_text_tokens(c, v)) for c in result.chunks] == [0, 1]


def test_break_with_emphasis_none_is_text(clip_l, v):
    result = tokenize_prompt("(cat) BREAK dog", clip_l, emphasis="None")
    assert len(result.chunks) == 1
    names = clip_l.convert_ids_to_tokens(_text_tokens(result.chunks[0], v))
    assert names[:3] == ["(</w>", "cat</w>", ")</w>"] and "b" in names  # "break" lower-cased, as characters
    assert set(result.chunks[0].weights) == {1.0}


def test_comma_backtrack_moves_the_tail_to_the_next_chunk(clip_l, v):
    # 70 words, a comma, 10 words: the chunk overflows 4 tokens after the comma → the 4 move on
    text = " ".join(["cat"] * 70) + ", " + " ".join(["dog"] * 10)
    a, b = tokenize_prompt(text, clip_l).chunks
    first, second = _text_tokens(a, v), _text_tokens(b, v)
    assert len(first) == 71 and first[-1] == v.comma
    assert clip_l.convert_ids_to_tokens(second) == ["dog</w>"] * 10
    assert a.tokens[72:] == [v.eos] * 5  # EOS then padding, here EOS too


def test_comma_too_far_back_does_not_move(clip_l, v):
    # comma 21 tokens before the end: beyond the 20-token backtrack window → plain split at 75
    text = " ".join(["cat"] * 54) + ", " + " ".join(["dog"] * 30)
    a, b = tokenize_prompt(text, clip_l).chunks
    assert len(_text_tokens(a, v)) == 75 and len(_text_tokens(b, v)) == 10


def test_comma_exactly_20_back_moves(clip_l, v):
    text = " ".join(["cat"] * 55) + ", " + " ".join(["dog"] * 30)  # comma at index 55, 75-55 = 20
    a, b = tokenize_prompt(text, clip_l).chunks
    assert len(_text_tokens(a, v)) == 56 and len(_text_tokens(b, v)) == 30


def test_comma_backtrack_off(clip_l, v):
    text = " ".join(["cat"] * 70) + ", " + " ".join(["dog"] * 10)
    a, b = tokenize_prompt(text, clip_l, comma_backtrack=0).chunks
    assert len(_text_tokens(a, v)) == 75 and len(_text_tokens(b, v)) == 6


def test_moved_tokens_keep_their_weights(clip_l, v):
    text = " ".join(["cat"] * 70) + ", " + " ".join(["(dog:1.4)"] * 6)
    a, b = tokenize_prompt(text, clip_l).chunks
    assert len(_text_tokens(a, v)) == 71 and b.weights[1:7] == [1.4] * 6


def test_empty_and_pad_chunks(clip_l, v):
    assert tokenize_prompt("", clip_l).chunks[0].tokens == empty_chunk(v).tokens
    chunks = pad_chunks(tokenize_prompt("cat", clip_l).chunks, 3, v)
    assert len(chunks) == 3 and chunks[1].tokens == chunks[2].tokens == empty_chunk(v).tokens
