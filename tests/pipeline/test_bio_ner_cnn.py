"""spaCy-style tests for bio_ner_cnn (overfitting, serialization, multiprocessing, edge cases, spacy train)."""
import subprocess
import sys
from pathlib import Path

import numpy
import pytest
import spacy
from spacy.tokens import Doc, Span
from spacy.training import Example

from spacy_clinalign.pipeline.bio_decoding import B, I, O, tags_to_spans, viterbi_bio
from spacy_clinalign.io.ner_corpora import read_conll_bio, read_spaccc_docs

ROOT = Path(__file__).resolve().parents[2]
TRAIN = [
    ("Paciente con neumonía y fiebre alta .", [(2, 3, "DISEASE"), (4, 6, "SYMPTOM")]),
    ("Se realizó una tomografía de tórax .", [(3, 6, "PROCEDURE")]),
    ("Dolor abdominal y vómitos desde hace días .", [(0, 2, "SYMPTOM"), (3, 4, "SYMPTOM")]),
    ("Diagnóstico de diabetes mellitus tipo 2 .", [(2, 6, "DISEASE")]),
]


def ner_config(encoder, **overrides):
    cfg = {
        "model": {
            "@architectures": "spacy-clinalign.CNNTagger.v1",
            "width": 32, "window_size": 2, "depth": 2, "dropout": 0.0,
            "tok2vec": {
                "@architectures": "spacy-transformers.Tok2VecTransformer.v3",
                "name": str(encoder),
                "tokenizer_config": {"use_fast": True},
                "grad_factor": 1.0,
                "pooling": {"@layers": "reduce_mean.v1"},
                "get_spans": {"@span_getters": "spacy-transformers.strided_spans.v1", "window": 32, "stride": 24},
            },
        }
    }
    cfg.update(overrides)
    return cfg


def make_examples(nlp, spans_key=None):
    examples = []
    for text, ents in TRAIN:
        ref = Doc(nlp.vocab, words=text.split())
        spans = [Span(ref, s, e, label=l) for s, e, l in ents]
        if spans_key:
            ref.spans[spans_key] = spans
        else:
            ref.ents = spans
        examples.append(Example(Doc(nlp.vocab, words=text.split()), ref))
    return examples


@pytest.fixture(scope="module")
def trained(tiny_encoder):
    nlp = spacy.blank("es")
    nlp.add_pipe("bio_ner_cnn", config=ner_config(tiny_encoder))
    examples = make_examples(nlp)
    optimizer = nlp.initialize(lambda: examples)
    optimizer.learn_rate = 1e-3
    for _ in range(80):
        nlp.update(examples, sgd=optimizer)
    return nlp


def test_viterbi_never_emits_invalid_bio():
    probs = numpy.array([[0.1, 0.1, 0.8], [0.2, 0.1, 0.7], [0.9, 0.05, 0.05], [0.1, 0.2, 0.7]])
    tags = viterbi_bio(probs)
    for prev, cur in zip([0] + list(tags[:-1]), tags):
        assert not (prev == 0 and cur == 2)
    assert tags_to_spans(numpy.array([1, 2, 0, 1, 1, 2])) == [(0, 2), (3, 4), (4, 6)]


def test_overfitting_IO(trained, tmp_path):
    for text, ents in TRAIN:
        doc = trained(text)
        assert [(e.start, e.end, e.label_) for e in doc.ents] == ents
        assert set(doc._.bio_probs) == {"DISEASE", "PROCEDURE", "SYMPTOM"}
        assert doc._.bio_probs["DISEASE"].shape == (len(doc), 3)
    trained.to_disk(tmp_path / "ner")
    loaded = spacy.load(tmp_path / "ner")
    for text, _ in TRAIN:
        a, b = trained(text), loaded(text)
        assert [(e.start, e.end, e.label_) for e in a.ents] == [(e.start, e.end, e.label_) for e in b.ents]
        numpy.testing.assert_allclose(a._.bio_probs["SYMPTOM"], b._.bio_probs["SYMPTOM"], atol=1e-5)
    scores = trained.evaluate(make_examples(trained))
    assert scores["ner_strict_f"] == 1.0 and scores["ner_char_f"] == 1.0


def test_multiprocessing_empty_and_long_docs(trained):
    texts = [t for t, _ in TRAIN]
    single = [[(e.start, e.end, e.label_) for e in trained(t).ents] for t in texts]
    multi = [[(e.start, e.end, e.label_) for e in d.ents] for d in trained.pipe(texts, n_process=2, batch_size=2)]
    assert single == multi
    empty = trained("")
    assert len(empty.ents) == 0
    long_doc = trained(" ".join([TRAIN[0][0]] * 715))  # 5,005 tokens, through strided windows
    assert len(long_doc) == 5005
    assert long_doc._.bio_probs["DISEASE"].shape == (5005, 3)
    assert len(long_doc.ents) > 500


def test_overlapping_labels_in_span_group(tiny_encoder):
    nlp = spacy.blank("es")
    nlp.add_pipe("bio_ner_cnn", config=ner_config(tiny_encoder, spans_key="sc"))
    examples = make_examples(nlp, spans_key="sc")
    ref = examples[0].reference
    ref.spans["sc"] = list(ref.spans["sc"]) + [Span(ref, 2, 6, label="SYMPTOM")]  # overlaps the DISEASE span
    optimizer = nlp.initialize(lambda: examples)
    optimizer.learn_rate = 1e-3
    for _ in range(80):
        nlp.update(examples, sgd=optimizer)
    doc = nlp(TRAIN[0][0])
    assert {(s.start, s.end, s.label_) for s in doc.spans["sc"]} >= {(2, 3, "DISEASE"), (2, 6, "SYMPTOM")}


def test_nested_spans_of_one_label_tag_the_longest(tiny_encoder):
    """A span nested in a longer one of the same label must not cut it: the longest is tagged B I I I."""
    nlp = spacy.blank("es")
    ner = nlp.add_pipe("bio_ner_cnn", config=ner_config(tiny_encoder, spans_key="sc"))
    ner.add_label("PROCEDURE")
    ner.add_label("DISEASE")
    ref = Doc(nlp.vocab, words="serología de hepatitis B negativa".split())
    ref.spans["sc"] = [Span(ref, 0, 4, label="PROCEDURE"), Span(ref, 2, 4, label="PROCEDURE"),
                       Span(ref, 2, 4, label="DISEASE")]
    tags = ner._gold_tags(Example(Doc(nlp.vocab, words=[t.text for t in ref]), ref))
    assert tags[:, 0].tolist() == [B, I, I, I, O]  # not B I B I O
    assert tags[:, 1].tolist() == [O, O, B, I, O]  # overlaps across labels are kept


def spans_from_tags(ner, doc, tag_rows):
    """set_annotations with one label whose most probable tag per token is `tag_rows`."""
    probs = numpy.full((len(doc), 1, 3), 0.01, dtype="float32")
    for i, tag in enumerate(tag_rows):
        probs[i, 0, tag] = 0.98
    ner.set_annotations([doc], [probs])
    return [s.text for s in doc.spans["sc"]]


@pytest.mark.parametrize("trim,want", [
    ({}, ["estudio inmunohistoquímico de", "sangre ,", "( TC )"]),
    ({"trim_end_words": ["De", "con"], "trim_end_punct": True}, ["estudio inmunohistoquímico", "sangre", "( TC )"]),
])
def test_trailing_function_words_and_punctuation_are_trimmed_when_asked(tiny_encoder, trim, want):
    nlp = spacy.blank("es")
    ner = nlp.add_pipe("bio_ner_cnn", config=ner_config(tiny_encoder, spans_key="sc", **trim))
    ner.add_label("PROCEDURE")
    doc = nlp.make_doc("estudio inmunohistoquímico de sangre , ( TC ) con")
    assert spans_from_tags(ner, doc, [B, I, I, B, I, B, I, I, B]) == want + (["con"] if not trim else [])
    assert doc._.bio_probs["PROCEDURE"][2, I] == pytest.approx(0.98)  # probabilities are not changed


def test_no_data_is_a_clear_error(tiny_encoder):
    nlp = spacy.blank("es")
    nlp.add_pipe("bio_ner_cnn", config=ner_config(tiny_encoder))
    no_ents = [Example(Doc(nlp.vocab, words=["a"]), Doc(nlp.vocab, words=["a"]))]
    with pytest.raises(ValueError, match="no entity labels found"):
        nlp.initialize(lambda: no_ents)


def test_readers(tmp_path):
    conll = tmp_path / "x.conll"
    conll.write_text("-DOCSTART- O\n\nDolor B-SYMPTOM\nabdominal I-SYMPTOM\n. O\n\nFiebre B-SYMPTOM\n", encoding="utf8")
    docs = list(read_conll_bio(conll, spacy.blank("es").vocab))
    assert [[e.text for e in d.ents] for d in docs] == [["Dolor abdominal"], ["Fiebre"]]
    conll.write_text("Dolor\n", encoding="utf8")
    with pytest.raises(ValueError, match=r"x\.conll:1: expected"):
        list(read_conll_bio(conll, spacy.blank("es").vocab))
    split = tmp_path / "split"
    (split / "text_files").mkdir(parents=True)
    (split / "text_files" / "d1.txt").write_text("Dolor abdominal por apendicitis aguda.", encoding="utf8")
    header = "filename\tmark\tlabel\toff0\toff1\tspan\n"
    (split / "distemist.tsv").write_text(header + "d1\tT1\tENFERMEDAD\t20\t37\tapendicitis aguda\n", encoding="utf8")
    (split / "medprocner.tsv").write_text(header, encoding="utf8")
    (split / "symptemist.tsv").write_text(header + "d1\tT1\tSINTOMA\t0\t15\tDolor abdominal\n", encoding="utf8")
    (doc,) = list(read_spaccc_docs(spacy.blank("es"), split))
    assert [(s.text, s.label_) for s in doc.spans["entities"]] == [("apendicitis aguda", "DISEASE"), ("Dolor abdominal", "SYMPTOM")]


def test_spacy_train_ner_cnn(tmp_path, tiny_encoder):
    split = tmp_path / "spaccc"
    (split / "text_files").mkdir(parents=True)
    header = "filename\tmark\tlabel\toff0\toff1\tspan\n"
    rows = {"distemist.tsv": [], "medprocner.tsv": [], "symptemist.tsv": []}
    for k, (text, ents) in enumerate(TRAIN):
        (split / "text_files" / f"d{k}.txt").write_text(text, encoding="utf8")
        doc = spacy.blank("es")(text)
        for s, e, label in ents:
            span = doc[s:e]
            file = {"DISEASE": "distemist.tsv", "PROCEDURE": "medprocner.tsv", "SYMPTOM": "symptemist.tsv"}[label]
            rows[file].append(f"d{k}\tT{len(rows[file])}\t{label}\t{span.start_char}\t{span.end_char}\t{span.text}\n")
    for name, lines in rows.items():
        (split / name).write_text(header + "".join(lines), encoding="utf8")
    cmd = [
        sys.executable, "-m", "spacy", "train", str(ROOT / "configs" / "ner_cnn.cfg"), "--output", str(tmp_path / "out"),
        "--paths.train", str(split), "--paths.dev", str(split), "--paths.encoder", str(tiny_encoder),
        "--training.max_steps", "6", "--training.eval_frequency", "3", "--components.bio_ner_cnn.model.width", "32",
        "--training.optimizer.learn_rate.warmup_steps", "1",
    ]
    result = subprocess.run(cmd, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:] + result.stdout[-3000:]
    assert "NER_CHAR_F" in result.stdout.upper()
    nlp = spacy.load(tmp_path / "out" / "model-last")
    assert nlp.get_pipe("bio_ner_cnn").labels == ("DISEASE", "PROCEDURE", "SYMPTOM")


def test_evaluate_ner_and_projection_with_ner_support_cli(tmp_path, trained, tiny_encoder, capsys):
    import json

    from spacy_clinalign.cli import main

    trained.to_disk(tmp_path / "ner")
    split = tmp_path / "split"
    (split / "text_files").mkdir(parents=True)
    (split / "text_files" / "d0.txt").write_text(TRAIN[0][0], encoding="utf8")
    header = "filename\tmark\tlabel\toff0\toff1\tspan\n"
    (split / "distemist.tsv").write_text(header + "d0\tT1\tENFERMEDAD\t13\t21\tneumonía\n", encoding="utf8")
    (split / "medprocner.tsv").write_text(header, encoding="utf8")
    (split / "symptemist.tsv").write_text(header + "d0\tT1\tSINTOMA\t24\t35\tfiebre alta\n", encoding="utf8")
    main(["evaluate-ner", str(tmp_path / "ner"), str(split), "--pred-tsv", str(tmp_path / "ner.tsv")])
    assert "DISEASE" in capsys.readouterr().out
    from spacy_clinalign.io.shared_task_tsv import read_shared_task_tsv

    for row in read_shared_task_tsv(tmp_path / "ner.tsv", texts={"d0": TRAIN[0][0]}):  # offsets into d0.txt
        assert TRAIN[0][0][row.start:row.end] == row.text
    main(["convert-spaccc", str(split), str(tmp_path / "dev.spacy")])
    from spacy.tokens import DocBin

    (doc,) = list(DocBin().from_disk(tmp_path / "dev.spacy").get_docs(spacy.blank("es").vocab))
    assert [(s.text, s.label_) for s in doc.spans["entities"]] == [("neumonía", "DISEASE"), ("fiebre alta", "SYMPTOM")]
    row = {"label": "DIS", "es_tokens": ["Paciente", "con", "neumonía"], "es_tags": ["O", "O", "B-DIS"],
           "en_tokens": ["Patient", "with", "neumonía"], "en_tags": ["O", "O", "B-DIS"]}
    data = tmp_path / "pairs.jsonl"
    data.write_text(json.dumps(row) + "\n", encoding="utf8")
    main(["evaluate-projection", str(tiny_encoder), str(data), "--layer", "2", "--ner", str(tmp_path / "ner")])
    assert "micro" in capsys.readouterr().out
