"""The linking engine owns its state, like spaCy's KnowledgeBase: CodeLinker.to_disk / from_disk, and
icd_linker delegates to it and honours `exclude`."""
import spacy

from spacy_clinalign.linking.linker import CodeLinker
from tests.pipeline.test_icd_linker import catalog, link_encoder, make_doc, make_nlp  # noqa: F401  (fixture)


def test_engine_round_trip_gives_the_same_rankings(tmp_path):
    engine = CodeLinker(catalog(), channels="bm25").build()
    engine.to_disk(tmp_path / "engine")
    assert sorted(p.name for p in (tmp_path / "engine").iterdir()) == ["bm25", "catalog.jsonl"]
    loaded = CodeLinker.from_disk(tmp_path / "engine", channels="bm25")
    queries = ["neumonía", "quiste renal", "fiebre alta"]
    assert [[c.code for c in per] for per in loaded.link(queries)] == [[c.code for c in per] for per in engine.link(queries)]


def test_component_honours_exclude(link_encoder, tmp_path):  # noqa: F811
    nlp = make_nlp(link_encoder, channels="dense")
    linker = nlp.get_pipe("icd_linker")
    linker.to_disk(tmp_path / "full")
    assert {"cfg", "catalog.jsonl", "bm25", "bi_encoder", "dense.faiss"} <= {p.name for p in (tmp_path / "full").iterdir()}
    linker.to_disk(tmp_path / "no_dense", exclude=["bi_encoder", "dense"])
    assert not (tmp_path / "no_dense" / "bi_encoder").exists() and not (tmp_path / "no_dense" / "dense.faiss").exists()
    linker.to_disk(tmp_path / "cfg_only", exclude=["linker"])
    assert [p.name for p in (tmp_path / "cfg_only").iterdir()] == ["cfg"]

    other = spacy.blank("es").add_pipe("icd_linker", config={"top_k": 3})
    other.from_disk(tmp_path / "full", exclude=["cfg"])
    assert other.cfg["top_k"] == 3 and other.linker.bi_encoder is not None
    bm25_only = spacy.blank("es").add_pipe("icd_linker").from_disk(tmp_path / "full", exclude=["bi_encoder"])
    assert bm25_only.linker.bi_encoder is None and bm25_only.linker.channels == "bm25"
    assert bm25_only.cfg["channels"] == "bm25"  # what predict links with
    doc = bm25_only(make_doc(spacy.blank("es")))
    assert doc.ents[0]._.icd_candidates[0]["code"] == "J18.9"
