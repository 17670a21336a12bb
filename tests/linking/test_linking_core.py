"""Codes, catalogues, mention readers and the paper's metrics (no encoder needed)."""
import pytest

from spacy_clinalign.linking.catalog import Catalog, load_catalog, load_cie
from spacy_clinalign.linking.codes import category_of, chapter_of, matches, normalize_code
from spacy_clinalign.scoring.linking import evaluate_rankings, format_table
from spacy_clinalign.linking.indexes import LexicalIndex, lexical_tokens
from spacy_clinalign.io.linking_mentions import read_codiesp_x, read_distemist_linking, read_mentions
from spacy_clinalign.linking.queries import context_of, format_query


@pytest.mark.parametrize("raw", ["n28.1", "N28.1", "N281", " n 28.1 ", "N28.1\n"])
def test_code_normalisation_makes_one_code(raw):
    assert normalize_code(raw) == "N28.1"


def test_code_normalisation_of_categories_procedures_and_ranges():
    assert normalize_code("e11") == "E11"
    assert normalize_code("s72.001a") == "S72.001A"
    assert normalize_code("bt41zzz") == "BT41ZZZ"  # ICD-10-PCS: no dot inserted
    assert normalize_code("i10-i15.9") == "I10-I15.9"
    with pytest.raises(ValueError, match="empty"):
        normalize_code("  ")


def test_levels_and_matching():
    assert category_of("N28.1") == "N28" and chapter_of("N28.1") == "14"
    assert chapter_of("S72.001A") == "19" and chapter_of("T88.1") == "19" and chapter_of("BT41ZZZ") is None
    assert matches("N28.1", "N28.1", "exact") and not matches("N28.0", "N28.1", "exact")
    assert matches("N28.0", "N28.1", "category") and not matches("N29", "N28.1", "category")
    assert matches("N00.1", "N28.1", "chapter") and not matches("M00.1", "N28.1", "chapter")
    assert not matches("I12.9", "I10-I15.9", "exact")
    assert matches("I12.9", "I10-I15.9", "category") and not matches("I20.9", "I10-I15.9", "category")
    assert matches("I20.9", "I10-I15.9", "chapter")


def test_catalog_merges_descriptions_and_normalises_codes():
    cat = Catalog([("n28.1", ["Cyst of kidney, acquired"]), ("N281", ["cyst of kidney, ACQUIRED", "Quiste renal"])])
    assert len(cat) == 1 and "N28.1" in cat and "n281" in cat
    assert cat["N28.1"].descriptions == ["Cyst of kidney, acquired", "Quiste renal"]
    counts = cat.add_synonyms([("quiste renal adquirido", "N28.1"), ("tos", "R05")])
    assert counts == {"added": 1, "skipped_unknown_code": 1, "new_codes": 0}
    assert cat.add_synonyms([("tos", "r05")], add_unknown=True)["new_codes"] == 1
    assert Catalog.from_bytes(cat.to_bytes())["R05"].descriptions == ["tos"]
    with pytest.raises(KeyError, match="Z99.9"):
        cat["z999"]


def test_catalog_files_round_trip_and_name_bad_lines(tmp_path):
    cat = Catalog([("J18.9", ["Pneumonia, unspecified organism", "Neumonía"]), ("E11.9", ["Type 2 diabetes"])])
    cat.to_jsonl(tmp_path / "cat.jsonl")
    again = Catalog.from_jsonl(tmp_path / "cat.jsonl")
    assert [(e.code, e.descriptions) for e in again] == [(e.code, e.descriptions) for e in cat]
    (tmp_path / "cat.tsv").write_text("code\tdescription\nj189\tNeumonía\nJ18.9\tPneumonia\n", encoding="utf8")
    assert load_catalog(tmp_path / "cat.tsv")["J18.9"].descriptions == ["Neumonía", "Pneumonia"]
    (tmp_path / "bad.jsonl").write_text('{"code": "J18.9", "descriptions": ["x"]}\n{"code": "E11"}\n')
    with pytest.raises(ValueError, match=r"bad.jsonl:2: .*descriptions"):
        Catalog.from_jsonl(tmp_path / "bad.jsonl")
    (tmp_path / "bad.tsv").write_text("J18.9\tPneumonia\nE11 only a code\n")
    with pytest.raises(ValueError, match=r"bad.tsv:2"):
        Catalog.from_tsv(tmp_path / "bad.tsv")
    with pytest.raises(FileNotFoundError, match="missing.jsonl"):
        Catalog.from_jsonl(tmp_path / "missing.jsonl")


def test_builtin_catalogues():
    cie = load_cie()
    assert cie["N28.1"].title == "Quiste de riñón, adquirido" and len(cie) > 10000
    both = load_catalog("icd10cm+cie10")
    assert both["N28.1"].descriptions[0] == "Cyst of kidney, acquired"
    assert "Quiste de riñón, adquirido" in both["N28.1"].descriptions
    assert len(both) > 98000 and "S72.001A" in both
    assert "N28.0" in both.siblings("N28.1") and "N28.1" not in both.siblings("N28.1")


def test_codiesp_reader_keeps_discontinuous_offsets(tmp_path):
    path = tmp_path / "devX.tsv"
    path.write_text(
        "doc1\tDIAGNOSTICO\tn28.1\tquiste renal\t0 6;10 15\n"
        "doc1\tPROCEDIMIENTO\tbt41zzz\tecografía\t20 29\n"
        "doc1\tDIAGNOSTICO\tr52\tdolor\t30 30;31 36\n", encoding="utf8")
    mentions = read_codiesp_x(path)
    assert [(m.codes, m.offsets) for m in mentions] == [(("N28.1",), ((0, 6), (10, 15))), (("R52",), ((31, 36),))]
    assert len(read_codiesp_x(path, labels=())) == 3
    path.write_text("doc1\tDIAGNOSTICO\tn28.1\tquiste\t7 3\n")
    with pytest.raises(ValueError, match=r"devX.tsv:1: bad offsets"):
        read_codiesp_x(path)


def test_distemist_reader_splits_plus_and_skips_none(tmp_path):
    header = "filename\tmark\tlabel\toff0\toff1\tspan\tcode\tsemantic_rel\tomim_code\tmesh_code\ticd10_code\thpo_code\n"
    (tmp_path / "x_linking_crossmappings.tsv").write_text(
        header + "d1\tT1\tENFERMEDAD\t0\t2\tDM\t1\tEXACT\tNone\tNone\tE14\tNone\n"
        "d1\tT2\tENFERMEDAD\t3\t9\tfiebre\t2\tEXACT\tNone\tNone\tNone\tNone\n"
        "d1\tT3\tENFERMEDAD\t10\t20\tfallo renal\t3\tEXACT\tNone\tNone\tN17.0+R82.1\tNone\n"
        "d1\tT4\tENFERMEDAD\t21\t24\tHTA\t4\tEXACT\tNone\tNone\tI10-I15.9\tNone\n", encoding="utf8")
    mentions = read_distemist_linking(tmp_path)
    assert [m.codes for m in mentions] == [("E14",), ("N17.0", "R82.1"), ("I10-I15.9",)]
    assert len(read_distemist_linking(tmp_path, skip_uncoded=False)) == 4
    assert read_mentions(tmp_path, fmt="distemist") == mentions
    (tmp_path / "x_linking_crossmappings.tsv").write_text("filename\tspan\n")
    with pytest.raises(ValueError, match="missing columns"):
        read_distemist_linking(tmp_path)


def test_queries_and_lexical_tokens():
    assert format_query("  quiste   renal ") == "quiste renal"
    text = "Paciente con quiste renal derecho y dolor lumbar"
    start = text.index("quiste")
    assert context_of(text, start, start + len("quiste renal"), 2) == "Paciente con … derecho y"
    assert format_query("quiste renal", "a … b") == "quiste renal | a … b"
    assert lexical_tokens("Neumonía, NEUMONIA y dolor tipo 2") == ["neumonia", "neumonia", "dolor", "tipo", "2"]


def test_metrics_match_hand_computed_values():
    golds = [("N28.1",), ("E11.9",), ("I10-I15.9",)]
    rankings = [["N28.1", "N28.0"], ["E11.65", "E10.9", "E11.9"], ["I12.9"]]
    report = evaluate_rankings(golds, rankings, predictions=["N28.1", "E11.65", None])
    exact, category = report["exact"], report["category"]
    # exact: 1 correct of 2 predicted, of 3 mentions
    assert exact["p"] == pytest.approx(1 / 2) and exact["r"] == pytest.approx(1 / 3)
    assert exact["f"] == pytest.approx(0.4)
    # AP@10: 1, 1/3 (hit at rank 3), 0 (a range never matches exactly)
    assert exact["map@10"] == pytest.approx((1 + 1 / 3) / 3)
    assert exact["p@3"] == pytest.approx((1 / 3 + 1 / 3) / 3) and exact["r@3"] == pytest.approx(2 / 3)
    # category: E11.65 collapses E11 to rank 1; I12 lies in I10-I15
    assert category["p"] == 1.0 and category["r"] == pytest.approx(2 / 3) and category["map@10"] == 1.0
    assert category["p@3"] == pytest.approx(1 / 3)
    assert "| bm25 | exact | 0.500 | 0.333 | 0.400 |" in format_table({"bm25": report})
    # a range gold is found once, however many of its codes are ranked: AP and P@k stay bounded
    ranged = evaluate_rankings([("I10-I15.9",)], [["I10", "I11.9", "I12.9"]])["category"]
    assert ranged["map@10"] == 1.0 and ranged["p@3"] == pytest.approx(1 / 3)
    with pytest.raises(ValueError, match="2 gold mentions but 1"):
        evaluate_rankings(golds[:2], rankings[:1])


def test_lexical_index_ranks_by_bm25_and_breaks_ties_in_catalogue_order():
    texts = ["dolor abdominal", "dolor", "fiebre alta", "dolor", "quiste renal derecho", "dolor toracico agudo"]
    codes = ["R10.9", "R52", "R50.9", "G89.29", "N28.1", "R07.9"]
    index = LexicalIndex(texts)
    hits = index.search(["dolor", "quiste renal", "xyzzy"], codes, k=3)
    # The two one-word "dolor" rows tie: the earlier code comes first, every time; longer rows follow.
    assert [code for code, _, _ in hits[0]] == ["R52", "G89.29", "R10.9"]
    assert hits[0][0][1] == pytest.approx(hits[0][1][1]) and hits[0][1][1] > hits[0][2][1]
    assert [(code, row) for code, _, row in hits[1]] == [("N28.1", 4)]  # only rows with a matching word
    assert hits[2] == []
