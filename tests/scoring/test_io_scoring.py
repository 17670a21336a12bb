import pytest
import spacy

from spacy_clinalign.io.alignment_files import (
    AlignmentFormatError,
    parse_links,
    read_binaryalign_jsonl,
    read_gold_set,
    read_links,
    read_parallel,
)
from spacy_clinalign.io.readers import create_parallel_corpus_reader
from spacy_clinalign.scoring.alignment import AlignmentCounts, score_link_sets

PUBLISHED_AWESOME_AER = {"enfr": 4.1, "roen": 20.7, "jaen": 37.4, "zhen": 13.4}


def test_parse_links_formats():
    assert parse_links("1-1 2p3 3?2", one_based=True) == [(0, 0, True), (1, 2, False), (2, 1, False)]
    assert parse_links("0-0 4-2:0.93") == [(0, 0, True), (4, 2, True)]
    with pytest.raises(AlignmentFormatError, match="malformed link 'x-1'"):
        parse_links("x-1")
    with pytest.raises(AlignmentFormatError, match="index 0 but the file is read as 1-based"):
        parse_links("0-1", one_based=True)


def test_unicode_spaces_are_tokens(tmp_path):
    par = tmp_path / "ja.src-tgt"
    par.write_text("天狗 の 山 \u3000 くらま ||| mountain of tengu\n", encoding="utf8")
    assert read_parallel(par)[0][0] == ["天狗", "の", "山", "\u3000", "くらま"]


def test_malformed_files_name_file_and_line(tmp_path):
    gold = tmp_path / "bad.gold"
    gold.write_text("1-1 2-2\n1-1 oops\n", encoding="utf8")
    with pytest.raises(AlignmentFormatError, match=r"bad\.gold:2: malformed link 'oops'"):
        read_links(gold, one_based=True)
    par = tmp_path / "bad.src-tgt"
    par.write_text("a b ||| c d\nno separator here\n", encoding="utf8")
    with pytest.raises(AlignmentFormatError, match=r"bad\.src-tgt:2: expected exactly one"):
        read_parallel(par)
    par.write_text("a b ||| c d\n", encoding="utf8")
    gold.write_text("3-1\n", encoding="utf8")
    with pytest.raises(AlignmentFormatError, match=r"bad\.gold:1: link '3-1' is outside"):
        read_gold_set(par, gold, one_based=True)
    jl = tmp_path / "bad.jsonl"
    jl.write_text('{"src_words": ["a"], "tgt_words": ["b"], "alignment": [[0, 0]]}\n{"src_words": 1}\n')
    with pytest.raises(AlignmentFormatError, match=r"bad\.jsonl:2: not a binaryalign record"):
        list(read_binaryalign_jsonl(jl))
    with pytest.raises(FileNotFoundError, match="Alignment file not found"):
        read_links(tmp_path / "missing.gold")


def test_aer_by_hand():
    # A = {(0,0),(1,1),(2,2)}; S = {(0,0)}; P = S + {(1,1)}
    counts = AlignmentCounts()
    counts.add({(0, 0), (1, 1), (2, 2)}, {(0, 0)}, {(1, 1)})
    s = counts.scores()
    assert s["align_p"] == pytest.approx(2 / 3)
    assert s["align_r"] == pytest.approx(1.0)
    assert s["align_aer"] == pytest.approx(1 - (1 + 2) / (3 + 1))
    assert s["align_f"] == pytest.approx(0.8)
    with pytest.raises(ValueError, match="AER of empty data is undefined"):  # issue 12: never a perfect 0.0
        AlignmentCounts().scores()


@pytest.mark.parametrize("pair", sorted(PUBLISHED_AWESOME_AER))
def test_awesome_align_published_aer_is_reproduced(shared_data, pair):
    folder = shared_data / "alignment" / "awesome-align"
    gold = read_links(folder / f"{pair}.gold", one_based=True)
    pred = read_links(folder / f"{pair}.awesome-align.out", one_based=False)
    scores = score_link_sets([[(j, i) for j, i, _ in p] for p in pred], gold)
    assert 100 * scores["align_aer"] == pytest.approx(PUBLISHED_AWESOME_AER[pair], abs=0.1)


def test_parallel_corpus_reader_yields_paired_examples(shared_data):
    folder = shared_data / "alignment" / "awesome-align"
    reader = create_parallel_corpus_reader(folder / "roen.src-tgt", folder / "roen.gold", one_based=True, limit=3)
    examples = list(reader(spacy.blank("en")))
    assert len(examples) == 3
    eg = examples[0]
    assert eg.predicted._.source is eg.reference._.source
    assert eg.reference._.alignment is not None and eg.predicted._.alignment is None
    jsonl = shared_data / "alignment" / "binaryalign" / "valid" / "en-es" / "es_golden.jsonl"
    first = next(iter(create_parallel_corpus_reader(jsonl)(spacy.blank("es"))))
    assert first.reference._.alignment.sure.all()
    assert [t.text for t in first.predicted._.source][:2] == ["approval", "of"]
