"""The MultiClinAI official span metrics (strict and character overlap) and the shared task's TSV format,
with every expected value worked out by hand."""
import json
import warnings

import pytest
import spacy
from spacy.tokens import Span
from spacy.training import Example
from spacy.util import registry

from spacy_clinalign.io.shared_task_tsv import (
    TsvSpan, read_shared_task_tsv, score_tsv_rows, spans_to_rows, write_doc_spans, write_shared_task_tsv,
)
from spacy_clinalign.scoring.spans import SpanCounts, overlap_f1


def _scores(pred, gold):
    counts = SpanCounts()
    counts.add(pred, gold)
    return counts.scores("")


def test_longer_prediction_scores_two_thirds():
    # gold [0,10), prediction [0,20): 10 shared characters, 2 * 10 / (10 + 20) = 2/3 from both sides
    s = _scores([(0, 20, "DIS")], [(0, 10, "DIS")])
    assert s["char_p"] == pytest.approx(2 / 3) and s["char_r"] == pytest.approx(2 / 3)
    assert s["char_f"] == pytest.approx(0.667, abs=5e-4)
    assert s["strict_f"] == 0.0


def test_wrong_label_scores_zero():
    s = _scores([(0, 10, "SYM")], [(0, 10, "DIS")])
    assert s["char_p"] == s["char_r"] == s["char_f"] == 0.0
    assert s["strict_f"] == 0.0


def test_two_predictions_in_one_gold_span_recall_takes_the_best():
    # gold [0,20); predictions [0,5) -> 2*5/25 = 0.4 and [5,20) -> 2*15/35 = 6/7.
    # recall: the gold span's best, 6/7; precision: each prediction's own best, (0.4 + 6/7) / 2 = 22/35
    s = _scores([(0, 5, "DIS"), (5, 20, "DIS")], [(0, 20, "DIS")])
    assert s["char_r"] == pytest.approx(6 / 7)
    assert s["char_p"] == pytest.approx(22 / 35)
    assert s["char_f"] == pytest.approx(2 * (6 / 7) * (22 / 35) / (6 / 7 + 22 / 35))


def test_every_span_weighs_the_same_unlike_the_pooled_measure():
    # gold: a long span [0,100) found exactly and a short one [200,204) missed.
    # official recall = (1 + 0) / 2 = 0.5; pooled recall = 100 / 104
    s = _scores([(0, 100, "DIS")], [(0, 100, "DIS"), (200, 204, "DIS")])
    assert s["char_r"] == pytest.approx(0.5) and s["char_p"] == pytest.approx(1.0)
    assert s["char_pooled_r"] == pytest.approx(100 / 104)


def test_hand_worked_mixed_document_per_type_and_micro():
    # gold: [0,10) DIS, [20,30) SYM; predicted: [0,10) DIS exact, [22,30) SYM (2*8/18 = 8/9), [40,45) SYM (0)
    s = _scores([(0, 10, "DIS"), (22, 30, "SYM"), (40, 45, "SYM")], [(0, 10, "DIS"), (20, 30, "SYM")])
    assert s["char_r"] == pytest.approx((1 + 8 / 9) / 2)
    assert s["char_p"] == pytest.approx((1 + 8 / 9 + 0) / 3)
    sym = s["per_type"]["SYM"]
    assert sym["char_r"] == pytest.approx(8 / 9) and sym["char_p"] == pytest.approx((8 / 9) / 2)
    assert s["strict_p"] == pytest.approx(1 / 3) and s["strict_r"] == pytest.approx(1 / 2)


def test_spans_are_averaged_over_documents_and_never_matched_across_them():
    counts = SpanCounts()
    counts.add([(0, 10, "DIS")], [(0, 10, "DIS")])  # doc 1: one span found
    counts.add([], [(0, 10, "DIS"), (20, 30, "DIS"), (40, 50, "DIS")])  # doc 2: three missed
    counts.add([(0, 10, "DIS")], [])  # doc 3: a spurious span at the offsets gold has elsewhere
    s = counts.scores("")
    assert s["char_r"] == pytest.approx(1 / 4) and s["char_p"] == pytest.approx(1 / 2)


def test_duplicate_predictions_do_not_change_strict_or_char():
    once = _scores([(0, 10, "DIS"), (30, 35, "DIS")], [(0, 10, "DIS"), (20, 25, "DIS")])
    twice = _scores([(0, 10, "DIS"), (0, 10, "DIS"), (30, 35, "DIS")], [(0, 10, "DIS"), (20, 25, "DIS")])
    assert twice["strict_p"] == once["strict_p"] == pytest.approx(1 / 2)
    assert twice["strict_r"] == once["strict_r"] == pytest.approx(1 / 2)
    assert twice["char_p"] == once["char_p"]


def test_no_predictions_scores_zero_and_warns_when_gold_is_empty_too():
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # gold present: zero, no warning
        s = _scores([], [(0, 10, "DIS")])
    assert s["char_p"] == s["char_r"] == s["char_f"] == s["strict_f"] == 0.0
    with pytest.warns(UserWarning, match="no spans"):
        s = _scores([], [])
    assert s["char_f"] == s["strict_f"] == 0.0


def test_overlap_f1_of_disjoint_and_touching_spans():
    assert overlap_f1((0, 5), (5, 10)) == 0.0
    assert overlap_f1((3, 7), (3, 7)) == 1.0


def _example(nlp, text, gold, pred, key="projected"):
    ref, doc = nlp.make_doc(text), nlp.make_doc(text)
    ref.spans[key] = [ref.char_span(s, e, label=l) for s, e, l in gold]
    doc.spans[key] = [doc.char_span(s, e, label=l) for s, e, l in pred]
    return Example(doc, ref)


def test_registered_scorers_report_the_official_char_metric():
    nlp = spacy.blank("en")
    # "chest pain" gold; "chest pain radiating" predicted: 2 * 10 / (10 + 20) = 2/3
    eg = _example(nlp, "chest pain radiating to arm", [(0, 10, "SYM")], [(0, 20, "SYM")])
    proj = registry.scorers.get("spacy-clinalign.projection_scorer.v1")()([eg])
    assert proj["proj_char_f"] == pytest.approx(2 / 3)
    assert proj["proj_char_pooled_p"] == pytest.approx(10 / 20)
    ref, doc = nlp.make_doc("chest pain radiating to arm"), nlp.make_doc("chest pain radiating to arm")
    ref.ents = [Span(ref, 0, 2, label="SYM")]
    doc.ents = [Span(doc, 0, 3, label="SYM")]
    ner = registry.scorers.get("spacy-clinalign.ner_scorer.v1")()([Example(doc, ref)])
    assert ner["ner_char_f"] == pytest.approx(2 / 3) and ner["ner_strict_f"] == 0.0


# --- the shared task's TSV -----------------------------------------------------------------------------

def test_tsv_round_trip_scores_one(tmp_path):
    nlp = spacy.blank("en")
    docs = {"case-1": nlp.make_doc("Fever and\tsevere chest pain."), "case-2": nlp.make_doc('No "acute" findings.')}
    docs["case-1"].spans["projected"] = [Span(docs["case-1"], 0, 1, label="SYM"), Span(docs["case-1"], 1, 4, label="SYM")]
    docs["case-2"].spans["projected"] = [Span(docs["case-2"], 1, 4, label="DIS")]  # quotes kept verbatim
    path = tmp_path / "pred.tsv"
    assert write_doc_spans(path, [(name, d.spans["projected"]) for name, d in docs.items()]) == 3
    header, *lines = path.read_text(encoding="utf8").splitlines()
    assert header == "filename\tlabel\tstart_span\tend_span\ttext"
    assert lines == ["case-1\tSYM\t0\t5\tFever", "case-1\tSYM\t6\t16\tand severe",  # the tab became a space
                     'case-2\tDIS\t3\t10\t"acute"']
    gold = read_shared_task_tsv(path, texts={n: d.text for n, d in docs.items()})
    predicted = [r for n, d in docs.items() for r in spans_to_rows(n, d.spans["projected"])]
    scores = score_tsv_rows(predicted, gold, documents=docs)
    assert scores["strict_f"] == 1.0 and scores["char_f"] == 1.0


def test_tsv_scoring_counts_documents_without_predictions(tmp_path):
    gold = [TsvSpan("a", "DIS", 0, 10, ""), TsvSpan("b", "DIS", 0, 10, "")]
    scores = score_tsv_rows([TsvSpan("a", "DIS", 0, 20, "")], gold)
    assert scores["char_r"] == pytest.approx((2 / 3) / 2) and scores["char_p"] == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="outside the scored set"):
        score_tsv_rows([TsvSpan("c", "DIS", 0, 5, "")], gold, documents=["a", "b"])


@pytest.mark.parametrize("row, message", [
    ("case-1\tDIS\t0\t5", r"bad\.tsv:3: expected 5 tab-separated columns"),
    ("case-1\tDIS\t5\t5\tx", r"bad\.tsv:3: end_span 5 must be greater than start_span 5"),
    ("case-1\tDIS\t9\t4\tx", r"bad\.tsv:3: end_span 4 must be greater"),
    ("case-1\tDIS\t0\t99\tx", r"bad\.tsv:3: end_span 99 is past the end of document 'case-1' \(12 characters\)"),
    ("case-1\tDIS\tzero\t4\tx", r"bad\.tsv:3: start_span 'zero'"),
    ("case-9\tDIS\t0\t4\tx", r"bad\.tsv:3: unknown document 'case-9'"),
])
def test_tsv_bad_rows_name_file_and_line(tmp_path, row, message):
    path = tmp_path / "bad.tsv"
    path.write_text(f"filename\tlabel\tstart_span\tend_span\ttext\ncase-1\tDIS\t0\t5\tFever\n{row}\n", encoding="utf8")
    with pytest.raises(ValueError, match=message):
        read_shared_task_tsv(path, texts={"case-1": "Fever again."})


def test_tsv_needs_its_header(tmp_path):
    path = tmp_path / "nohead.tsv"
    path.write_text("case-1\tDIS\t0\t5\tFever\n", encoding="utf8")
    with pytest.raises(ValueError, match=r"nohead\.tsv:1: expected the header"):
        read_shared_task_tsv(path)


def test_tsv_writer_refuses_empty_spans(tmp_path):
    with pytest.raises(ValueError, match="end_span 3 <= start_span 3"):
        write_shared_task_tsv(tmp_path / "x.tsv", [TsvSpan("a", "DIS", 3, 3, "")])


def test_evaluate_projection_pred_tsv_round_trip(tmp_path, tiny_encoder, capsys):
    """`evaluate-projection --pred-tsv` writes offsets into each target text as written; read back as
    gold, the predictions score 1.0 strict and char."""
    from spacy_clinalign.cli import main

    data = tmp_path / "pairs.jsonl"
    rows = [{"label": "DIS", "es_tokens": ["Tiene", "fiebre", "alta", "."], "es_tags": ["O", "B-DIS", "I-DIS", "O"],
             "en_tokens": ["Has", "high", "fever", "."], "en_tags": ["O", "B-DIS", "I-DIS", "O"]},
            {"label": "SYM", "es_tokens": ["Dolor", "leve"], "es_tags": ["B-SYM", "O"],
             "en_tokens": ["Mild", "pain"], "en_tags": ["O", "B-SYM"]}]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf8")
    pred = tmp_path / "pred.tsv"
    main(["evaluate-projection", str(tiny_encoder), str(data), "--layer", "2", "--pred-tsv", str(pred),
          "--threshold", "0.01"])
    texts = {"pairs-1": "Has high fever .", "pairs-2": "Mild pain"}
    written = read_shared_task_tsv(pred, texts=texts)
    assert written, "the tiny aligner projected nothing; the round trip would be vacuous"
    for row in written:
        assert texts[row.filename][row.start:row.end] == row.text
    scores = score_tsv_rows(written, written, documents=texts)
    assert scores["strict_f"] == 1.0 and scores["char_f"] == 1.0


def test_evaluate_in_place_can_drop_the_matrices_without_changing_a_score(tmp_path, tiny_encoder):
    """evaluate-projection drops each pair's alignment matrix once the projector has read it (memory, issue
    18): same scores and spans, no matrix left."""
    from spacy_clinalign.io.multiclinai import read_multiclinai_examples
    from spacy_clinalign.pipelines import load_projection_pipeline
    from spacy_clinalign.scoring.spans import evaluate_in_place

    data = tmp_path / "pairs.jsonl"
    rows = [{"label": "DIS", "es_tokens": ["Tiene", "fiebre", "alta", "."], "es_tags": ["O", "B-DIS", "I-DIS", "O"],
             "en_tokens": ["Has", "high", "fever", "."], "en_tags": ["O", "B-DIS", "I-DIS", "O"]}] * 3
    data.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf8")
    nlp = load_projection_pipeline(str(tiny_encoder), 2, threshold=0.01)
    results = {}
    for keep in (True, False):
        examples = list(read_multiclinai_examples(nlp.vocab, data))
        scores = evaluate_in_place(nlp, examples, keep_matrices=keep)
        spans = [[(s.start, s.end, s.label_) for s in eg.predicted.spans["projected"]] for eg in examples]
        kept = [eg.predicted._.alignment.matrix is not None for eg in examples]
        results[keep] = (scores, spans, kept)
    assert results[True][0] == results[False][0] and results[True][1] == results[False][1]
    assert any(results[True][1]), "nothing projected: the comparison would be vacuous"
    assert all(results[True][2]) and not any(results[False][2])
