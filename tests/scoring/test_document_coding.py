"""Document coding end to end (mentions -> icd_linker -> codes) and its CodiEsp-D / CodiEsp-X style metrics,
with values worked out by hand."""
import pytest
import spacy

from spacy_clinalign.linking.catalog import Catalog
from spacy_clinalign.linking.document_coding import evaluate_document_coding, read_codiesp_split
from spacy_clinalign.scoring.document_coding import (
    CodedSpan, average_precision, rank_document_codes, score_document_codes, score_mention_codes,
)


def test_rank_document_codes_keeps_each_codes_best_score():
    spans = [CodedSpan("d1", "N28.1", ((0, 1),), 0.4), CodedSpan("d1", "N28.1", ((5, 6),), 0.9),
             CodedSpan("d1", "N28.9", ((7, 8),), 0.8), CodedSpan("d1", "N20.0", ((9, 10),), 0.5)]
    assert rank_document_codes(spans) == {"d1": [("N28.1", 0.9), ("N28.9", 0.8), ("N20.0", 0.5)]}


def test_document_level_map_and_prf_by_hand():
    gold = {"d1": {"N28.1", "N20.0"}, "d2": {"I10"}}
    ranked = {"d1": [("N28.1", 0.9), ("N28.9", 0.8), ("N20.0", 0.5)]}
    kept = {"d1": ["N28.1", "N28.9"]}
    s = score_document_codes(gold, ranked, kept)
    # d1: hits at ranks 1 and 3 -> AP = (1/1 + 2/3) / 2 = 5/6; d2 has no prediction -> 0; MAP = 5/12
    assert s["exact"]["map"] == pytest.approx(5 / 12)
    # kept: N28.1 right, N28.9 wrong; gold has 3 codes -> P 1/2, R 1/3, F1 0.4
    assert s["exact"]["p"] == pytest.approx(1 / 2) and s["exact"]["r"] == pytest.approx(1 / 3)
    assert s["exact"]["f"] == pytest.approx(0.4)
    # category: d1 ranking collapses to [N28, N20], both gold -> AP 1; MAP (1 + 0) / 2; kept {N28}: P 1, R 1/3
    assert s["category"]["map"] == pytest.approx(0.5)
    assert s["category"]["p"] == 1.0 and s["category"]["r"] == pytest.approx(1 / 3)
    with pytest.raises(ValueError, match="no gold entry"):
        score_document_codes(gold, {"d9": [("I10", 1.0)]}, {})


def test_average_precision_counts_unranked_gold_codes():
    assert average_precision(["A", "B"], {"B", "C"}) == pytest.approx((1 / 2) / 2)
    assert average_precision([], {"A"}) == 0.0


def test_mention_level_overlap_one_to_one_by_hand():
    gold = [CodedSpan("d1", "N28.1", ((0, 10),)), CodedSpan("d1", "N20.0", ((20, 30),)),
            CodedSpan("d2", "I10", ((0, 5),))]
    predicted = [CodedSpan("d1", "N28.1", ((5, 15),)),   # overlaps gold N28.1: right
                 CodedSpan("d1", "N28.1", ((8, 12),)),   # the same gold mention again: wrong (one-to-one)
                 CodedSpan("d1", "N20.9", ((25, 28),)),  # wrong code; right category
                 CodedSpan("d1", "N20.0", ((30, 40),)),  # only touches [20,30): no overlap
                 CodedSpan("d2", "I10", ((0, 5),))]      # right
    s = score_mention_codes(gold, predicted)
    assert s["exact"]["p"] == pytest.approx(2 / 5) and s["exact"]["r"] == pytest.approx(2 / 3)
    # category: N20.9 at [25,28) takes gold N20.0; N20.0 at [30,40) still does not overlap it
    assert s["category"]["p"] == pytest.approx(3 / 5) and s["category"]["r"] == 1.0
    with pytest.raises(ValueError, match="not in the scored set"):
        score_mention_codes(gold, [CodedSpan("d9", "I10", ((0, 1),))])


ENTRIES = [("J18.9", ["Pneumonia, unspecified organism", "neumonía"]),
           ("J18.0", ["Bronchopneumonia, unspecified organism", "bronconeumonía"]),
           ("R50.9", ["Fever, unspecified", "fiebre"]), ("I10", ["Essential (primary) hypertension"]),
           ("R05", ["Cough", "tos"])]
TEXTS = {"d1": "Paciente con neumonía y fiebre .", "d2": "Refiere cansancio ."}


@pytest.fixture
def split_dir(tmp_path):
    (tmp_path / "text_files").mkdir()
    for name, text in TEXTS.items():
        (tmp_path / "text_files" / f"{name}.txt").write_text(text, encoding="utf8")
    # d1: two coded mentions and a code (I10) with no mention; d2: a code with no mention
    (tmp_path / "devD.tsv").write_text("d1\tj18.9\nd1\tr50.9\nd1\ti10\nd2\tr05\n", encoding="utf8")
    x = [("d1", "DIAGNOSTICO", "j18.9", "neumonía", TEXTS["d1"].index("neumonía")),
         ("d1", "DIAGNOSTICO", "r50.9", "fiebre", TEXTS["d1"].index("fiebre"))]
    (tmp_path / "devX.tsv").write_text("".join(f"{d}\t{l}\t{c}\t{t}\t{s} {s + len(t)}\n" for d, l, c, t, s in x),
                                       encoding="utf8")
    return tmp_path


def bm25_linker():
    nlp = spacy.blank("es")
    nlp.add_pipe("icd_linker", config={"channels": "bm25"}).initialize(catalog=Catalog(ENTRIES))
    return nlp


def test_gold_mentions_through_bm25_linker(split_dir):
    split = read_codiesp_split(split_dir)
    assert split.doc_codes == {"d1": {"J18.9", "R50.9", "I10"}, "d2": {"R05"}} and len(split.mentions) == 2
    result = evaluate_document_coding(bm25_linker(), split)
    # each gold mention is a catalogue description, so BM25 links both right.
    # d1 ranking holds J18.9 and R50.9 (ranks 1-2) of 3 gold codes: AP = (1 + 1) / 3; d2: 0 -> MAP 1/3
    doc = result["document"]["exact"]
    assert doc["map"] == pytest.approx(1 / 3)
    assert doc["p"] == 1.0 and doc["r"] == pytest.approx(2 / 4)
    assert result["mention"]["exact"]["p"] == 1.0 and result["mention"]["exact"]["r"] == 1.0
    assert result["documents"] == 2 and result["seconds_per_document"] > 0


def test_ner_mentions_through_bm25_linker(split_dir):
    ner = spacy.blank("es")
    ner.add_pipe("entity_ruler").add_patterns([{"label": "ENFERMEDAD", "pattern": "neumonía"},
                                               {"label": "ENFERMEDAD", "pattern": "Paciente"},
                                               {"label": "OTRO", "pattern": "fiebre"}])
    result = evaluate_document_coding(bm25_linker(), read_codiesp_split(split_dir), ner=ner, ner_labels=["ENFERMEDAD"])
    # "neumonía" -> J18.9; "Paciente" matches no description -> NIL (no code); "fiebre" has another label
    assert result["mentions_linked"] == 2
    doc = result["document"]["exact"]
    assert doc["map"] == pytest.approx((1 / 3 + 0) / 2)  # d1: J18.9 at rank 1 of 3 gold codes
    assert doc["p"] == 1.0 and doc["r"] == pytest.approx(1 / 4)
    mention = result["mention"]["exact"]
    assert mention["p"] == 1.0 and mention["r"] == pytest.approx(1 / 2)


def test_evaluate_documents_command(split_dir, tmp_path, capsys):
    from spacy_clinalign.cli import main

    catalog = tmp_path / "catalog.jsonl"
    Catalog(ENTRIES).to_jsonl(catalog)
    main(["link", "evaluate-documents", "bm25", str(split_dir), "--catalog", str(catalog), "--limit", "1"])
    out = capsys.readouterr().out
    assert "1 documents, 2 mentions linked" in out
    # d1 alone: AP = 2/3; P 1, R 2/3, F1 0.8; mentions 1.0
    assert "| gold mentions + bm25 | exact | 0.667 | 1.000 | 0.667 | 0.800 | 1.000 | 1.000 | 1.000 |" in out


def test_split_reader_names_bad_lines(tmp_path, split_dir):
    (split_dir / "devD.tsv").write_text("d1\tj18.9\nd1\n", encoding="utf8")
    with pytest.raises(ValueError, match=r"devD\.tsv:2: expected 2 tab-separated fields"):
        read_codiesp_split(split_dir)
