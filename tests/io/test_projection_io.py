import json

import pytest
import spacy

from spacy_clinalign import render
from spacy_clinalign.cli import main
from spacy_clinalign.io.multiclinai import read_multiclinai_examples
from spacy_clinalign.io.standoff import entities_to_spans, read_ann, read_spaccc_tsv

SRC = "Paciente con neumonía grave y fiebre alta."
TGT = "Patient with severe pneumonia and high fever."


def test_brat_and_tsv_readers(tmp_path):
    ann = tmp_path / "doc.ann"
    ann.write_text("T1\tDISEASE 13 21\tneumonía\nR1\tRel Arg1:T1 Arg2:T2\nT2\tSYMPTOM 30 36;37 41\tfiebre alta\n", encoding="utf8")
    ents = read_ann(ann)
    assert [(e.id, e.label, e.fragments) for e in ents] == [("T1", "DISEASE", [(13, 21)]), ("T2", "SYMPTOM", [(30, 36), (37, 41)])]
    doc = spacy.blank("es")(SRC)
    spans = entities_to_spans(doc, ents, "doc.txt")
    assert [s.text for s in spans] == ["neumonía", "fiebre", "alta"]  # discontinuous: one span per fragment
    tsv = tmp_path / "distemist.tsv"
    tsv.write_text("filename\tmark\tlabel\toff0\toff1\tspan\ndoc\tT1\tENFERMEDAD\t13\t21\tneumonía\n", encoding="utf8")
    assert read_spaccc_tsv([tsv])["doc"][0].label == "DISEASE"
    tsv.write_text('filename\tann_id\tlabel\tstart_span\tend_span\ttext\ndoc\tT1\tSINTOMA\t0\t8\t"a ""b"" c"\n', encoding="utf8")
    assert read_spaccc_tsv([tsv])["doc"][0].text == 'a "b" c' and read_spaccc_tsv([tsv])["doc"][0].label == "SYMPTOM"
    bad = tmp_path / "bad.ann"
    bad.write_text("T1\tDISEASE x y\tneumonía\n", encoding="utf8")
    with pytest.raises(ValueError, match=r"bad\.ann:1: malformed"):
        read_ann(bad)
    with pytest.raises(ValueError, match="outside the text"):
        entities_to_spans(doc, [type(ents[0])("T9", "X", [(10, 999)], "")], "doc.txt")
    with pytest.raises(ValueError, match="differs from the document"):
        entities_to_spans(doc, [type(ents[0])("T9", "X", [(0, 8)], "Paziente")], "doc.txt")


def test_project_cli_writes_brat_and_unprojected_report(tmp_path, tiny_encoder):
    src_dir, tgt_dir, out = tmp_path / "es", tmp_path / "en", tmp_path / "out"
    src_dir.mkdir()
    tgt_dir.mkdir()
    (src_dir / "case1.txt").write_text(SRC, encoding="utf8")
    (src_dir / "case1.ann").write_text("T1\tDISEASE 13 21\tneumonía\nT2\tSYMPTOM 30 36\tfiebre\n", encoding="utf8")
    (tgt_dir / "case1.txt").write_text(TGT, encoding="utf8")
    html = tmp_path / "view.html"
    main(["project", str(tiny_encoder), str(src_dir), str(tgt_dir), str(out), "--layer", "2",
          "--threshold", "0.2", "--html", str(html), "--pred-tsv", str(tmp_path / "pred.tsv")])
    assert (out / "case1.txt").read_text(encoding="utf8") == TGT
    ann = read_ann(out / "case1.ann")
    report = (out / "unprojected.tsv").read_text(encoding="utf8").splitlines()
    assert len(ann) + len(report) - 1 == 2  # every source span is either projected or reported
    for ent in ann:
        start, end = ent.fragments[0]
        assert TGT[start:end] == ent.text
    assert "<mark" in html.read_text(encoding="utf8")
    from spacy_clinalign.io.shared_task_tsv import read_shared_task_tsv

    rows = read_shared_task_tsv(tmp_path / "pred.tsv", texts={"case1": TGT})  # the same spans as the .ann
    assert sorted((r.label, r.start, r.end) for r in rows) == sorted((e.label, *e.fragments[0]) for e in ann)
    (tgt_dir / "case1.txt").unlink()  # every document failing stops the command with the first reason
    with pytest.raises(SystemExit, match="all 1 documents failed .*case1: FileNotFoundError: no translation"):
        main(["project", str(tiny_encoder), str(src_dir), str(tgt_dir), str(tmp_path / "o2"), "--layer", "2"])


def test_multiclinai_reader(tmp_path):
    row = {"label": "DIS", "es_tokens": ["Tiene", "neumonía", "grave."], "es_tags": ["O", "B-DIS", "I-DIS"],
           "en_tokens": ["Has", "severe", "pneumonia."], "en_tags": ["O", "B-DIS", "I-DIS"]}
    path = tmp_path / "pairs.jsonl"
    path.write_text(json.dumps(row) + "\n" + json.dumps({**row, "en_tags": ["O"]}) + "\n", encoding="utf8")
    examples = read_multiclinai_examples(spacy.blank("en").vocab, path)
    eg = next(examples)
    assert [e.text for e in eg.predicted._.source.ents] == ["neumonía grave."]
    assert [s.text for s in eg.reference.spans["projected"]] == ["severe pneumonia."]
    with pytest.raises(ValueError, match=r"pairs\.jsonl:2 \(en\): 3 tokens but 1 tags"):
        next(examples)


def test_render_pair_html(tiny_encoder):
    from tests.conftest import aligner_config

    nlp = spacy.blank("en")
    nlp.add_pipe("clinical_aligner", config=aligner_config(tiny_encoder))
    nlp.add_pipe("span_projector", config={"threshold": 0.2})
    nlp.initialize()
    src = spacy.blank("es")(SRC)
    src.ents = [src.char_span(13, 21, label="DISEASE")]
    from spacy_clinalign import make_pair

    doc = nlp(make_pair(src, TGT, nlp))
    html = render(doc, title="case", jupyter=False)
    assert html.startswith("<!DOCTYPE html>") and "neumonía" in html and "DISEASE" in html and "<table>" in html
    with pytest.raises(ValueError, match="no `_.source`"):
        render(nlp.make_doc("x"), jupyter=False)


def test_multiclinai_split_is_fixed_by_pair_id_and_halves_do_not_meet(tmp_path):
    from spacy_clinalign.io.multiclinai import multiclinai_split

    rows = [{"label": "DIS", "es_tokens": [f"w{i}"], "es_tags": ["B-DIS"], "en_tokens": [f"w{i}"], "en_tags": ["B-DIS"]}
            for i in range(5)]
    path = tmp_path / "pairs.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf8")
    vocab = spacy.blank("en").vocab
    tune = [eg.predicted.text.strip() for eg in read_multiclinai_examples(vocab, path, split="tune")]
    report = [eg.predicted.text.strip() for eg in read_multiclinai_examples(vocab, path, split="report")]
    assert tune == ["w0", "w2", "w4"] and report == ["w1", "w3"]
    assert [multiclinai_split(i) for i in range(4)] == ["tune", "report", "tune", "report"]
    assert [eg.predicted.text.strip() for eg in read_multiclinai_examples(vocab, path, split="report", limit=1)] == ["w1"]
    with pytest.raises(ValueError, match="split"):
        next(read_multiclinai_examples(vocab, path, split="test"))


def test_multiclinai_retokenized_keeps_text_and_gold_characters(tmp_path):
    row = {"label": "DIS", "es_tokens": ["Tiene", "neumonía", "grave."], "es_tags": ["O", "B-DIS", "I-DIS"],
           "en_tokens": ["Has", "severe", "pneumonia."], "en_tags": ["O", "B-DIS", "I-DIS"]}
    path = tmp_path / "pairs.jsonl"
    path.write_text(json.dumps(row) + "\n", encoding="utf8")
    plain = next(read_multiclinai_examples(spacy.blank("en").vocab, path))
    eg = next(read_multiclinai_examples(spacy.blank("en").vocab, path, tokenizer_langs=("es", "en")))
    assert [t.text for t in eg.predicted] == ["Has", "severe", "pneumonia", "."]
    assert eg.predicted.text == eg.reference.text == plain.predicted.text
    (src,) = eg.predicted._.source.ents
    assert [t.text for t in src] == ["neumonía", "grave", "."]  # the source span keeps its "." as a token
    assert (src.start_char, src.end_char) == (6, 21)
