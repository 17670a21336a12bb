import csv
import io

import pytest
import spacy
from spacy.tokens import Span
from spacy.training import Example

from spacy_clinalign.scoring.projection_errors import (
    boundary_category, classify_examples, classify_spans, count_errors, errors_to_tsv, format_error_counts,
)


def categories(pred, gold):
    return [e.category for e in classify_spans(pred, gold)]


def test_exact_match_is_no_error():
    assert classify_spans([(0, 5, "DIS")], [(0, 5, "DIS")]) == []


@pytest.mark.parametrize("pred,expected", [
    ((0, 10, "DIS"), "too_long_left"), ((4, 10, "DIS"), "too_short_left"),
    ((2, 12, "DIS"), "too_long_right"), ((2, 8, "DIS"), "too_short_right"),
    ((0, 12, "DIS"), "too_long"), ((3, 9, "DIS"), "too_short"), ((0, 8, "DIS"), "shifted"),
])
def test_boundary_errors_name_the_edge(pred, expected):
    gold = (2, 10, "DIS")
    assert categories([pred], [gold]) == [expected]
    assert boundary_category(pred, gold) == expected


def test_missing_spurious_and_wrong_label():
    assert categories([], [(0, 5, "DIS")]) == ["missing"]
    assert categories([(0, 5, "DIS")], []) == ["spurious"]
    assert categories([(0, 5, "SYM")], [(0, 5, "DIS")]) == ["wrong_label"]
    # a same-label match takes precedence: the other-label prediction over it is then spurious
    assert sorted(categories([(0, 5, "DIS"), (0, 5, "SYM")], [(0, 5, "DIS")])) == ["spurious"]


def test_split_and_merged():
    split = classify_spans([(0, 4, "DIS"), (5, 10, "DIS")], [(0, 10, "DIS")])
    assert [e.category for e in split] == ["split"] and len(split[0].predicted) == 2
    merged = classify_spans([(0, 10, "DIS")], [(0, 4, "DIS"), (5, 10, "DIS")])
    assert [e.category for e in merged] == ["merged"] and len(merged[0].gold) == 2
    assert categories([(0, 4, "DIS"), (3, 10, "DIS")], [(0, 6, "DIS"), (7, 10, "DIS")]) == ["split_merged"]


def test_every_non_exact_span_is_in_one_row_and_counts_per_label():
    pred = [(0, 5, "DIS"), (10, 16, "DIS"), (30, 35, "SYM"), (50, 55, "PRO")]
    gold = [(0, 5, "DIS"), (10, 15, "DIS"), (20, 25, "DIS"), (30, 35, "SYM")]
    errors = classify_spans(pred, gold)
    assert [e.category for e in errors] == ["too_long_right", "missing", "spurious"]
    assert count_errors(errors) == {"DIS": {"too_long_right": 1, "missing": 1}, "PRO": {"spurious": 1}}
    table = format_error_counts(errors)
    assert table.splitlines()[0].split() == ["label", "missing", "spurious", "too_long_right", "all"]
    assert table.splitlines()[-1].split() == ["all", "1", "1", "1", "3"]


def test_examples_to_tsv_rows_with_texts():
    nlp = spacy.blank("en")
    ref = nlp("right and left hypochondrium pain")
    pred = nlp("right and left hypochondrium pain")
    ref.spans["projected"] = [Span(ref, 2, 4, label="DIS")]
    pred.spans["projected"] = [Span(pred, 2, 5, label="DIS")]
    errors = classify_examples([Example(pred, ref)], doc_ids=["pair-7"])
    rows = list(csv.reader(io.StringIO(errors_to_tsv(errors, {"pair-7": ref.text})), delimiter="\t"))
    assert rows[1] == ["pair-7", "DIS", "too_long_right", "10-28", "10-33", "DIS", "left hypochondrium",
                       "left hypochondrium pain"]


def test_examples_with_different_texts_are_refused():
    nlp = spacy.blank("en")
    with pytest.raises(ValueError, match="texts differ"):
        classify_examples([Example(nlp("a b"), nlp("a c"))])


def test_evaluate_projection_writes_errors_tsv(tiny_encoder, tmp_path, capsys):
    import json

    from spacy_clinalign.cli import main

    rows = [{"label": "DIS", "es_tokens": ["Paciente", "con", "neumonía", f"n{i}"], "es_tags": ["O", "O", "B-DIS", "O"],
             "en_tokens": ["Patient", "with", "pneumonia", f"n{i}"], "en_tags": ["O", "B-DIS", "I-DIS", "I-DIS"]}
            for i in range(3)]
    data = tmp_path / "pairs.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf8")
    out = tmp_path / "errors.tsv"
    main(["evaluate-projection", str(tiny_encoder), str(data), "--layer", "2", "--split", "tune",
          "--decoder", "candidates", "--symmetrize", "grow_diag_final", "--errors", str(out)])
    printed = capsys.readouterr().out
    assert "errors per label" in printed and "micro" in printed
    table = list(csv.reader(out.open(encoding="utf8"), delimiter="\t"))
    assert table[0][:3] == ["doc_id", "label", "category"]
    assert {r[0] for r in table[1:]} <= {"0", "2"}  # only the tune half (even pair ids)
    assert len(table) - 1 == int(printed.strip().splitlines()[-1].split()[-1])  # one row per counted error
    assert all(r[6] == "with pneumonia n0" or r[6].startswith("with pneumonia") for r in table[1:] if r[3])
