"""`pipelines build` on the tiny encoder and a tiny catalogue: folders that `spacy.load` reads and runs,
with the card's version and figures in meta.json; a part that is not shipped is said so; `spacy package`
makes a wheel that loads with no other folder; `make demo` names the weights it loaded."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import spacy

from spacy_clinalign.cli import main
from spacy_clinalign.pairs import make_pair
from spacy_clinalign.pipelines import pick_demo_encoder
from spacy_clinalign.shipping.checksums import part_digest
from spacy_clinalign.shipping.packaging import package_pipeline

ROOT = Path(__file__).resolve().parents[2]
CATALOG = [("J18.9", ["neumonía"]), ("E11.9", ["diabetes mellitus tipo 2"]), ("R50.9", ["fiebre"]),
           ("N28.1", ["quiste renal"])]
SRC, TGT = "La prueba reveló una deficiencia de calcio .", "The test revealed a calcium deficiency ."

pytest.importorskip("faiss")  # es_icd_linker's dense index (the [linking] extra)


@pytest.fixture(scope="module")
def built(made_weights, tiny_encoder, tmp_path_factory):
    out = tmp_path_factory.mktemp("built")
    catalog = out.parent / "catalog.jsonl"
    catalog.write_text("".join(json.dumps({"code": c, "descriptions": d}) + "\n" for c, d in CATALOG), encoding="utf8")
    main(["pipelines", "build", str(out), "--encoder", str(tiny_encoder), "--catalog", str(catalog),
          "--weights", str(made_weights), "--no-progress"])
    return out


def aligned(nlp):
    return nlp(make_pair(spacy.blank("es")(SRC), TGT, nlp))


def test_build_makes_pipelines_that_load_and_run(built, made_weights):
    assert sorted(p.name for p in built.iterdir()) == ["es_clinical_ner", "es_en_clinical_aligner", "es_icd_linker"]
    aligner = spacy.load(built / "es_en_clinical_aligner")
    assert aligner.pipe_names == ["clinical_aligner", "span_projector"]
    projector = aligner.get_pipe("span_projector")  # English function words and head nouns for the spans' edges
    assert (projector.cfg["source_lang"], projector.cfg["target_lang"]) == ("es", "en")
    assert len(aligned(aligner)._.alignment.links) > 0
    meta = aligner.meta
    assert (meta["name"], meta["version"], meta["performance"]) == ("es_en_clinical_aligner", "0.0.1", {"proj_char_f": 0.5})
    assert meta["spacy_clinalign"]["weights_sha256"] == part_digest(made_weights, "es_en_aligner")
    assert meta["sources"] == ["tests"]
    config = (built / "es_en_clinical_aligner" / "config.cfg").read_text()
    assert 'name = "clinalign-e5-small"' in config and str(made_weights) not in config
    ner = spacy.load(built / "es_clinical_ner")
    assert ner.pipe_names == ["transformer", "bio_ner_cnn"] and ner.get_pipe("bio_ner_cnn").labels
    assert set(ner("Paciente con neumonía .")._.bio_probs) == set(ner.get_pipe("bio_ner_cnn").labels)
    linker = spacy.load(built / "es_icd_linker")
    doc = linker.make_doc("Paciente con quiste renal .")
    doc.ents = [doc.char_span(13, 25, label="DISEASE")]
    assert linker(doc).ents[0].kb_id_ == "N28.1"


def test_a_part_that_is_not_shipped_is_said_so(made_weights, tiny_encoder, tmp_path, capsys):
    import shutil

    weights = shutil.copytree(made_weights, tmp_path / "weights")
    shutil.rmtree(weights / "es_clinical_ner")
    (weights / "SHA256SUMS").write_text("".join(
        line + "\n" for line in (weights / "SHA256SUMS").read_text().splitlines() if "es_clinical_ner/" not in line))
    main(["pipelines", "build", str(tmp_path / "out"), "--encoder", str(tiny_encoder), "--weights", str(weights),
          "--only", "es_en_clinical_aligner", "--no-progress"])
    assert (tmp_path / "out" / "es_en_clinical_aligner" / "meta.json").is_file()
    with pytest.raises(SystemExit, match=r"es_clinical_ner: its trained weights \(es_clinical_ner\) are not shipped"):
        main(["pipelines", "build", str(tmp_path / "out"), "--encoder", str(tiny_encoder), "--weights", str(weights),
              "--only", "es_clinical_ner", "--no-progress"])
    assert not (tmp_path / "out" / "es_clinical_ner").exists()


def test_spacy_package_wheel_loads_with_no_other_folder(built, tmp_path):
    wheel = package_pipeline(built / "es_en_clinical_aligner", tmp_path / "packages")
    assert wheel.name.startswith("en_es_en_clinical_aligner-0.0.1")
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target), str(wheel)],
                   check=True)
    code = ("import spacy, sys\n"
            "nlp = spacy.load('en_es_en_clinical_aligner')\n"
            "from spacy_clinalign.pairs import make_pair\n"
            f"doc = nlp(make_pair(spacy.blank('es')({SRC!r}), {TGT!r}, nlp))\n"
            "print(doc._.alignment.to_pharaoh())\n")
    env = {**os.environ, "PYTHONPATH": f"{target}{os.pathsep}{ROOT}", "SPACY_CLINALIGN_ENCODER": str(tmp_path / "gone"),
           "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    (tmp_path / "empty").mkdir()
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path / "empty", env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == aligned(spacy.load(built / "es_en_clinical_aligner"))._.alignment.to_pharaoh()


def test_demo_uses_the_shipped_aligner_and_names_it(made_weights, tiny_encoder, tmp_path, capsys):
    name, layer = pick_demo_encoder(None, tmp_path, weights_dir=made_weights, base=str(tiny_encoder))
    printed = capsys.readouterr().out
    digest = part_digest(made_weights, "es_en_aligner")[:12]
    assert f"Using the shipped trained aligner es_en_aligner (weights sha256 {digest}" in printed
    assert layer == 2 and (Path(name) / "model.safetensors").is_file()
    assert pick_demo_encoder(None, tmp_path, weights_dir=made_weights, base=str(tiny_encoder)) == (name, layer)
    empty = tmp_path / "no_weights"
    empty.mkdir()
    _, _ = pick_demo_encoder(None, tmp_path, weights_dir=empty, base=str(tiny_encoder))
    assert "Using the UNTRAINED multilingual-e5-small" in capsys.readouterr().out


def test_demo_refuses_tampered_weights_and_says_it_runs_untrained(weights, tiny_encoder, tmp_path, capsys):
    card = weights / "es_en_aligner" / "card.json"
    card.write_text(card.read_text().replace('"steps": 3', '"steps": 4'))
    name, _ = pick_demo_encoder(None, tmp_path, weights_dir=weights, base=str(tiny_encoder))
    captured = capsys.readouterr()
    assert "The shipped aligner weights were NOT loaded" in captured.err and "card.json does not match" in captured.err
    assert "Using the UNTRAINED multilingual-e5-small" in captured.out and name == str(tiny_encoder)
