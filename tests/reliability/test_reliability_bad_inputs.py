"""Reliability, bad inputs (issue 12, items 3 and 9): inputs that used to be silently truncated, silently
turned into other values, or read wrongly must now be encoded in full or refused with a message naming
the problem (file, line, value)."""
import base64
import random

import pytest
import spacy

from spacy_clinalign import make_pair
from spacy_clinalign.encoders.tiny import build_tiny_bert
from spacy_clinalign.io.alignment_files import read_binaryalign_jsonl, read_gold_set, read_links, read_parallel
from spacy_clinalign.io.multiclinai import create_multiclinai_reader, read_multiclinai_examples
from spacy_clinalign.io.ner_corpora import create_spaccc_reader, read_conll_bio
from spacy_clinalign.io.readers import create_parallel_corpus_reader
from spacy_clinalign.io.standoff import read_ann
from spacy_clinalign.io.text_lines import InputFormatError, split_lines
from spacy_clinalign.linking.codes import normalize_code
from spacy_clinalign.models.span_getters import WordpieceStridedSpans
from spacy_clinalign.scoring.alignment import AlignmentCounts, score_alignment, score_link_sets

from tests.conftest import aligner_config

# -- item 3: windows are cut by wordpieces, so nothing after a long token is silently dropped --------------

MAX_LENGTH = 48  # the encoder takes 48 wordpieces a window (46 without [CLS] / [SEP])


@pytest.fixture(scope="module")
def short_encoder(tmp_path_factory):
    return build_tiny_bert(tmp_path_factory.mktemp("short_bert"), model_max_length=MAX_LENGTH,
                           max_position_embeddings=MAX_LENGTH)


def _blob(n_chars: int = 4000) -> str:
    return base64.b64encode(random.Random(0).randbytes(n_chars * 3 // 4)).decode("ascii")[:n_chars]


BLOB = _blob()
HGVS = "c.1234_5678delACGTAC"
TARGET = f"{BLOB} The test revealed a calcium and potassium deficiency ({HGVS}) , probably a result of her diet ."


def _aligner(encoder, **overrides):
    nlp = spacy.blank("en")
    # The factory's default windows (128 tokens / 96): the whole pair fits in one window by token count.
    nlp.add_pipe("clinical_aligner", config={"model": {"name": str(encoder), "layer": 2}, **overrides})
    nlp.initialize()
    return nlp


def test_blob_then_sentence_every_token_gets_a_vector_and_the_sentence_gets_links(short_encoder):
    nlp = _aligner(short_encoder)
    source = nlp.make_doc(TARGET)  # the same text: each token after the blob should link to its copy
    doc = nlp(make_pair(source, TARGET, nlp))
    start = [t.text for t in doc].index("The")
    assert len(BLOB) == 4000 and doc[:start].text == BLOB  # tokens of hundreds of wordpieces each
    target_norms, source_norms = doc._.alignment.norms
    # every token, the blob's included (each from its first 47 wordpieces), has a non-zero vector
    assert (target_norms > 0).all(), [t.text for t, n in zip(doc, target_norms) if n == 0]
    assert (source_norms > 0).all(), [t.text for t, n in zip(source, source_norms) if n == 0]
    # before the fix, these tokens had zero vectors on both sides and no links at all
    after_blob = {int(i) for i, j in doc._.alignment.links if i >= start and i == j}
    assert len(after_blob) >= 0.8 * (len(doc) - start), doc._.alignment.to_pharaoh()


def test_wordpiece_windows_respect_the_encoder_limit_and_cover_every_token(short_encoder):
    nlp = _aligner(short_encoder)
    transformer = nlp.get_pipe("clinical_aligner").model.layers[0]
    get_spans = transformer.attrs["get_spans"]
    tokenizer = transformer.tokenizer
    doc = nlp.make_doc(" ".join([TARGET] + [HGVS] * 40 + ["deficiency of calcium"] * 30))
    assert get_spans.sentences  # the default: sentence windows, cut by wordpieces too
    for getter in (get_spans, WordpieceStridedSpans(window=128, stride=96).bind(transformer)):
        windows = getter([doc])[0]
        covered = set()
        for span in windows:
            covered.update(range(span.start, span.end))
            n_pieces = len(tokenizer(span.text)["input_ids"])
            assert len(span) == 1 or n_pieces <= MAX_LENGTH, (span.start, span.end, n_pieces)
        assert covered == set(range(len(doc)))
        # a token too long for the encoder stands alone in its window
        assert any(len(span) == 1 and len(tokenizer(span.text)["input_ids"]) > MAX_LENGTH for span in windows)


def test_wordpiece_windows_reject_zero_window_and_need_a_bound_tokenizer(short_encoder):
    with pytest.raises(ValueError, match="window must be an integer >= 1"):
        WordpieceStridedSpans(window=0, stride=1)
    with pytest.raises(ValueError, match="stride must be an integer with 1 <= stride <= window"):
        WordpieceStridedSpans(window=8, stride=9)
    with pytest.raises(ValueError, match="needs the encoder's tokenizer"):
        WordpieceStridedSpans(window=8, stride=4)([spacy.blank("en")("a b")])


def test_strided_window_zero_is_an_error(tiny_encoder):
    nlp = spacy.blank("en")
    cfg = aligner_config(tiny_encoder)
    cfg["model"]["get_spans"] = {"@span_getters": "spacy-transformers.strided_spans.v1", "window": 0, "stride": 1}
    with pytest.raises(ValueError, match="window must be an integer >= 1"):
        nlp.add_pipe("clinical_aligner", config=cfg)


@pytest.mark.parametrize("value", [-1, -100])
def test_negative_sinkhorn_iterations_is_an_error(tiny_encoder, value):
    nlp = spacy.blank("en")
    with pytest.raises(ValueError, match="sinkhorn_iterations must be an integer >= 0"):
        nlp.add_pipe("clinical_aligner", config=aligner_config(tiny_encoder, sinkhorn_iterations=value))


# -- item 9: smaller bad inputs -------------------------------------------------------------------------

@pytest.mark.parametrize("code", ["E11.6.5", "E1.16", "N2.8.1", ".E11", "E11.6.", "A0.01"])
def test_misplaced_dots_never_become_a_real_code(code):
    with pytest.raises(ValueError, match="invalid ICD-10 code"):
        normalize_code(code)
    assert normalize_code("e11.65") == normalize_code("E1165") == "E11.65"


def test_negative_limits_are_errors(tmp_path):
    par = tmp_path / "p.src-tgt"
    par.write_text("a b ||| c d\n", encoding="utf8")
    with pytest.raises(ValueError, match="limit must be an integer >= 0"):
        create_parallel_corpus_reader(par, limit=-1)
    with pytest.raises(ValueError, match="limit must be an integer >= 0"):
        create_spaccc_reader(tmp_path, limit=-1)
    with pytest.raises(ValueError, match="limit must be an integer >= 0"):
        create_multiclinai_reader(tmp_path / "x.jsonl", limit=-1)
    with pytest.raises(ValueError, match="limit must be an integer >= 0"):
        list(read_multiclinai_examples(spacy.blank("en").vocab, tmp_path / "x.jsonl", limit=-2))
    from spacy_clinalign.scoring.gold_sets import evaluate_gold_sets

    with pytest.raises(ValueError, match="limit must be an integer >= 0"):
        evaluate_gold_sets(spacy.blank("en"), tmp_path, limit=-1)
    from spacy_clinalign.linking.catalog import Catalog
    from spacy_clinalign.linking.training import catalog_training_pairs

    catalog = Catalog([("E11.9", ["Type 2 diabetes", "diabetes tipo 2"])])
    with pytest.raises(ValueError, match="limit must be an integer >= 0"):
        catalog_training_pairs(catalog, limit=-1)
    assert catalog_training_pairs(catalog, limit=None) == [("diabetes tipo 2", "E11.9")]
    reader = create_parallel_corpus_reader(par, limit=0)
    assert len(list(reader(spacy.blank("en")))) == 1


def test_aer_of_empty_data_is_an_error_not_zero():
    with pytest.raises(ValueError, match="no sentence pairs"):
        AlignmentCounts().scores()
    with pytest.raises(ValueError, match="no sentence pairs"):
        score_link_sets([], [])
    with pytest.raises(ValueError, match="no predicted and no sure gold links"):
        score_link_sets([[]], [[]])
    with pytest.raises(ValueError, match="2 predicted link lists but 1 gold"):
        score_link_sets([[(0, 0)], [(1, 1)]], [[(0, 0, True)]])
    # spaCy's scorer convention: undefined scores are None (spacy train / evaluate skip them), not 0.0
    assert score_alignment([]) == {"align_aer": None, "align_p": None, "align_r": None, "align_f": None}
    assert score_link_sets([[(0, 0)]], [[(0, 0, True)]])["align_aer"] == 0.0


def test_bad_utf8_names_the_file_and_line(tmp_path):
    par = tmp_path / "bad.src-tgt"
    par.write_bytes(b"a b ||| c d\ne \xff f ||| g\n")
    with pytest.raises(InputFormatError, match=r"bad\.src-tgt:2: not valid UTF-8 \(byte 0xff"):
        read_parallel(par)
    gold = tmp_path / "bad.gold"
    gold.write_bytes(b"1-1\n\xc3\n")
    with pytest.raises(InputFormatError, match=r"bad\.gold:2: not valid UTF-8"):
        read_links(gold)
    ann = tmp_path / "bad.ann"
    ann.write_bytes(b"T1\tDISEASE 0 4\tfoo\xe9\n")
    with pytest.raises(InputFormatError, match=r"bad\.ann:1: not valid UTF-8"):
        read_ann(ann)
    conll = tmp_path / "bad.conll"
    conll.write_bytes(b"a O\n\nb\xfe O\n")
    with pytest.raises(InputFormatError, match=r"bad\.conll:3: not valid UTF-8"):
        list(read_conll_bio(conll, spacy.blank("en").vocab))


def test_bad_json_names_the_file_and_line(tmp_path):
    jl = tmp_path / "bad.jsonl"
    jl.write_text('{"src_words": ["a"], "tgt_words": ["b"], "alignment": [[0, 0]]}\n{"src_words": [\n', encoding="utf8")
    with pytest.raises(InputFormatError, match=r"bad\.jsonl:2: not a binaryalign record"):
        list(read_binaryalign_jsonl(jl))
    mc = tmp_path / "pairs.jsonl"
    mc.write_text("\n{oops}\n", encoding="utf8")
    with pytest.raises(InputFormatError, match=r"pairs\.jsonl:2: invalid JSON"):
        list(read_multiclinai_examples(spacy.blank("en").vocab, mc))
    mc.write_bytes(b'{"a": "\xff"}\n')
    with pytest.raises(InputFormatError, match=r"pairs\.jsonl:1: not valid UTF-8"):
        list(read_multiclinai_examples(spacy.blank("en").vocab, mc))


@pytest.mark.parametrize("separator", ["\u2028", "\u0085", "\u2029", "\x0c", "\x1e"])
def test_unicode_line_separators_inside_a_parallel_line_are_not_line_breaks(tmp_path, separator):
    par = tmp_path / "p.src-tgt"
    par.write_text(f"a{separator}b c ||| d e\r\nf ||| g{separator}h\n", encoding="utf8")
    gold = tmp_path / "p.gold"
    gold.write_text("1-1 2-2\n1-1\n", encoding="utf8")
    pairs = read_parallel(par)
    assert pairs == [([f"a{separator}b", "c"], ["d", "e"]), (["f"], [f"g{separator}h"])]
    rows = read_gold_set(par, gold, one_based=True)
    assert [len(links) for _, _, links in rows] == [2, 1]
    assert split_lines("x\u2028y\r\nz\n") == ["x\u2028y", "z"]
