"""SPACCC reader's held-out slice: every k-th training document (file-name order) is held out for model
selection, so the official dev split is read only for the final figures."""
import pytest
import spacy

from spacy_clinalign.io.ner_corpora import create_spaccc_reader, read_spaccc_docs

HEADER = "filename\tmark\tlabel\toff0\toff1\tspan\n"


@pytest.fixture
def split(tmp_path):
    (tmp_path / "text_files").mkdir()
    rows = []
    for k in range(7):
        (tmp_path / "text_files" / f"d{k}.txt").write_text(f"Dolor abdominal {k}.", encoding="utf8")
        rows.append(f"d{k}\tT1\tSINTOMA\t0\t15\tDolor abdominal\n")
    (tmp_path / "symptemist.tsv").write_text(HEADER + "".join(rows), encoding="utf8")
    for name in ("distemist.tsv", "medprocner.tsv"):
        (tmp_path / name).write_text(HEADER, encoding="utf8")
    return tmp_path


def names(docs):
    return [d.user_data["filename"] for d in docs]


def test_train_and_heldout_parts_split_the_documents(split):
    nlp = spacy.blank("es")
    every = names(read_spaccc_docs(nlp, split))
    held = names(read_spaccc_docs(nlp, split, part="heldout", heldout_every=3))
    train = names(read_spaccc_docs(nlp, split, part="train", heldout_every=3))
    assert held == ["d0", "d3", "d6"] and train == ["d1", "d2", "d4", "d5"]
    assert sorted(held + train) == every
    examples = list(create_spaccc_reader(split, part="heldout", heldout_every=3, limit=2)(nlp))
    assert [eg.predicted.user_data["filename"] for eg in examples] == ["d0", "d3"]  # limit counts the part's documents
    assert [s.text for s in examples[0].reference.spans["entities"]] == ["Dolor abdominal"]


@pytest.mark.parametrize("kwargs,message", [
    ({"part": "dev", "heldout_every": 10}, "part must be one of"),
    ({"part": "train", "heldout_every": 0}, "needs heldout_every >= 2"),
    ({"part": "heldout", "heldout_every": 1}, "heldout_every must be 0"),
])
def test_bad_split_settings_are_refused(split, kwargs, message):
    with pytest.raises(ValueError, match=message):
        create_spaccc_reader(split, **kwargs)
