"""Corpus runs: one process vs a local Ray with 2 CPU workers (same bytes), a worker killed mid-run,
resume, bad documents in errors.tsv, and the message when Ray is missing."""
import os
import sys
from pathlib import Path

import pytest
import spacy

from tests.conftest import aligner_config
from spacy_clinalign.distributed import (
    ERRORS_FILE, LinkTask, ProjectTask, read_errors, require_ray, run_local, run_ray,
)
from spacy_clinalign.io.atomic import atomic_write_bytes

WORDS_ES = ["paciente", "con", "dolor", "abdominal", "y", "fiebre", "alta", "desde", "hace", "tres", "días",
            "se", "observa", "deficiencia", "de", "calcio", "en", "la", "analítica"]
WORDS_EN = ["patient", "with", "abdominal", "pain", "and", "high", "fever", "for", "three", "days", "the",
            "test", "shows", "calcium", "deficiency", "in", "blood"]
N_DOCS = 20
BAD_ANN, BAD_UTF8 = "doc05", "doc13"


def _write_corpus(root: Path) -> Path:
    """20 document pairs with brat annotations; one has a malformed .ann line, one is not UTF-8."""
    src, tgt = root / "es", root / "en"
    src.mkdir(parents=True)
    tgt.mkdir()
    for k in range(N_DOCS):
        name = f"doc{k:02d}"
        words = [WORDS_ES[(k * 7 + i * 3) % len(WORDS_ES)] for i in range(8 + (k * 5) % 23)]
        text = " ".join(words) + "."
        (src / f"{name}.txt").write_text(text, encoding="utf8")
        (tgt / f"{name}.txt").write_text(" ".join(WORDS_EN[(k + i * 5) % len(WORDS_EN)] for i in range(6 + (k * 3) % 19)) + ".",
                                         encoding="utf8")
        first, second = words[1], words[4]
        start2 = text.index(" " + second + " ") + 1 if " " + second + " " in text else text.index(second)
        ann = f"T1\tDISEASE 0 {len(words[0])}\t{words[0]}\nT2\tSYMPTOM {start2} {start2 + len(second)}\t{second}\n"
        if name == BAD_ANN:
            ann += "T3\tDISEASE four five\tbroken\n"
        (src / f"{name}.ann").write_text(ann, encoding="utf8")
        assert first
    (src / f"{BAD_UTF8}.txt").write_bytes(b"dolor \xff\xfe abdominal")
    return root


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    return _write_corpus(tmp_path_factory.mktemp("corpus"))


@pytest.fixture(scope="module")
def pipeline_dir(tmp_path_factory, tiny_encoder) -> Path:
    """A saved pipeline with clinical_aligner + span_projector over the tiny encoder."""
    nlp = spacy.blank("xx")
    nlp.add_pipe("clinical_aligner", config=aligner_config(tiny_encoder, store_matrix=True))
    nlp.add_pipe("span_projector", config={"threshold": 0.1})
    nlp.initialize()
    path = tmp_path_factory.mktemp("pipeline") / "aligner"
    nlp.to_disk(path)
    return path


@pytest.fixture(scope="module")
def local_ray():
    ray = require_ray()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    # the test module's Task subclass travels to the workers by value (they cannot import tests/)
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    yield ray
    ray.shutdown()


def _task(corpus: Path, pipeline_dir: Path, cls=ProjectTask, **kwargs):
    return cls(str(pipeline_dir), corpus / "es", corpus / "en", layer=2, **kwargs)


def _files(folder: Path):
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def single_process(corpus, pipeline_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("single")
    summary = run_local(_task(corpus, pipeline_dir), out, batch_size=3, progress=False)
    return out, summary


def test_single_process_outputs_and_errors_file(single_process):
    out, summary = single_process
    assert (summary.total, summary.written, summary.skipped) == (N_DOCS, N_DOCS - 2, 0)
    errors = dict(read_errors(out))
    assert sorted(errors) == [BAD_ANN, BAD_UTF8]
    assert "malformed brat entity line" in errors[BAD_ANN] and f"{BAD_ANN}.ann:3" in errors[BAD_ANN]
    assert "not valid UTF-8" in errors[BAD_UTF8]
    files = _files(out)
    good = [f"doc{k:02d}" for k in range(N_DOCS) if f"doc{k:02d}" not in errors]
    assert all(f"{n}.ann" in files and f"{n}.txt" in files for n in good)
    assert f"{BAD_ANN}.ann" not in files and f"{BAD_UTF8}.txt" not in files
    assert any(files[f"{n}.ann"].startswith(b"T1\t") for n in good)  # something was projected
    assert files["unprojected.tsv"].startswith(b"filename\tlabel")
    assert not [f for f in files if f.endswith(".tmp")]


def test_ray_two_workers_byte_identical_to_single_process(single_process, local_ray, corpus, pipeline_dir, tmp_path, capsys):
    from spacy_clinalign.cli import main

    main(["project", str(pipeline_dir), str(corpus / "es"), str(corpus / "en"), str(tmp_path), "--layer", "2",
          "--batch-size", "3", "--ray", "--workers", "2"])
    assert f"{N_DOCS} documents: {N_DOCS - 2} written, 0 already done, 2 failed" in capsys.readouterr().err
    assert _files(tmp_path) == _files(single_process[0])
    # a rerun finds everything done: nothing is processed again (failed documents are retried)
    again = run_ray(_task(corpus, pipeline_dir), tmp_path, batch_size=3, workers=2)
    assert (again.written, again.skipped, len(again.errors)) == (0, N_DOCS - 2, 2)
    assert _files(tmp_path) == _files(single_process[0])


class CrashingProjectTask(ProjectTask):
    """Kills its worker process (os._exit, no cleanup) the first time it meets `crash_on`; a marker
    file records that it happened. Every document it serializes is logged, to count attempts."""

    def __init__(self, *args, crash_on: str, marker_dir: str, **kwargs):
        super().__init__(*args, **kwargs)
        self.crash_on, self.marker_dir = crash_on, Path(marker_dir)

    def process(self, state, records):
        crashed = self.marker_dir / "crashed"
        if any(r["name"] == self.crash_on for r in records) and not crashed.exists():
            crashed.write_text(str(os.getpid()))
            os._exit(1)
        return super().process(state, records)

    def serialize(self, state, record, doc):
        with open(self.marker_dir / "serialized.log", "a", encoding="utf8") as f:
            f.write(record["name"] + "\n")
        return super().serialize(state, record, doc)


def test_ray_worker_killed_mid_run_every_document_written_once(single_process, local_ray, corpus, pipeline_dir, tmp_path):
    out, log_dir = tmp_path / "out", tmp_path / "log"
    log_dir.mkdir()
    task = _task(corpus, pipeline_dir, CrashingProjectTask, crash_on="doc10", marker_dir=str(log_dir))
    summary = run_ray(task, out, batch_size=3, workers=2)
    assert (log_dir / "crashed").exists()  # a worker really died mid-run
    assert (summary.written, len(summary.errors)) == (N_DOCS - 2, 2)
    assert _files(out) == _files(single_process[0])
    serialized = (log_dir / "serialized.log").read_text(encoding="utf8").split()
    assert sorted(serialized) == sorted(set(serialized)) and len(serialized) == N_DOCS - 2  # once each


def test_resume_runs_only_missing_documents(single_process, corpus, pipeline_dir, tmp_path):
    out = tmp_path / "out"
    single = _files(single_process[0])
    for rel, data in single.items():
        atomic_write_bytes(out / rel, data)
    (out / "doc07.ann").unlink()  # as if the run had stopped before doc07 was complete
    summary = run_local(_task(corpus, pipeline_dir), out, batch_size=3, progress=False)
    assert (summary.written, summary.skipped, len(summary.errors)) == (1, N_DOCS - 3, 2)
    assert _files(out) == single


def test_align_cli_on_ray_matches_single_process_align(local_ray, pipeline_dir, tmp_path, monkeypatch):
    from spacy_clinalign.cli import main

    lines = [" ".join(WORDS_ES[i:i + 3 + i % 5]) + " ||| " + " ".join(WORDS_EN[i:i + 2 + i % 6]) for i in range(12)]
    good = tmp_path / "good.src-tgt"
    good.write_text("\n".join(lines[:11]) + "\n", encoding="utf8")
    main(["align", str(pipeline_dir), str(good), str(tmp_path / "single.pharaoh"), "--batch-size", "4"])
    # the same pairs plus a malformed last line (the chunks of 4 stay the same)
    bad = tmp_path / "bad.src-tgt"
    bad.write_text("\n".join(lines[:11] + ["no separator here"]) + "\n", encoding="utf8")
    monkeypatch.chdir(tmp_path)  # relative paths: the Ray workers do not share the driver's working folder
    main(["align", str(pipeline_dir), "bad.src-tgt", "ray.pharaoh", "--batch-size", "4", "--ray"])
    errors = read_errors(tmp_path / "ray.pharaoh.parts")
    assert [name for name, _ in errors] == ["000000012"]
    assert "bad.src-tgt:12: expected exactly one ' ||| '" in errors[0][1]
    assert len(list((tmp_path / "ray.pharaoh.parts").glob("*.pharaoh"))) == 11
    # one line per input line, the failed one empty, the rest byte-identical to the single-process align
    assert (tmp_path / "ray.pharaoh").read_bytes() == (tmp_path / "single.pharaoh").read_bytes() + b"\n"


def test_missing_ray_names_the_extra(monkeypatch, tmp_path):
    from spacy_clinalign.cli import main

    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(ImportError, match=r"spacy-clinalign\[ray\]"):
        require_ray()
    (tmp_path / "p.src-tgt").write_text("a ||| b\n", encoding="utf8")
    with pytest.raises(SystemExit, match=r"ray is not installed.*pip install 'spacy-clinalign\[ray\]'"):
        main(["align", str(tmp_path), str(tmp_path / "p.src-tgt"), str(tmp_path / "out"), "--ray"])


def test_bad_corpus_arguments_are_clear(tmp_path, pipeline_dir):
    with pytest.raises(FileNotFoundError, match="is not a folder"):
        run_local(ProjectTask(str(pipeline_dir), tmp_path / "nope", tmp_path), tmp_path / "out", progress=False)
    with pytest.raises(ValueError, match="batch_size must be at least 1"):
        run_local(ProjectTask(str(pipeline_dir), tmp_path, tmp_path), tmp_path / "out", batch_size=0, progress=False)
    assert not (tmp_path / "out" / ERRORS_FILE).exists()


def test_link_corpus_writes_codes_per_document(tmp_path):
    from spacy_clinalign.linking.catalog import Catalog

    nlp = spacy.blank("es")
    linker = nlp.add_pipe("icd_linker", config={"channels": "bm25", "query_prefix": "", "passage_prefix": ""})
    linker.initialize(catalog=Catalog([("J18.9", ["neumonía"]), ("R50.9", ["fiebre"]), ("N28.1", ["quiste renal"])]))
    nlp.to_disk(tmp_path / "linker")
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.txt").write_text("Paciente con neumonía y fiebre.", encoding="utf8")
    (docs / "a.ann").write_text("T1\tDIS 13 21\tneumonía\nT2\tSYM 24 30\tfiebre\n", encoding="utf8")
    (docs / "b.txt").write_text("Quiste renal derecho.", encoding="utf8")
    (docs / "b.ann").write_text("T1\tDIS 0 12\tQuiste renal\n", encoding="utf8")
    (docs / "c.txt").write_text("Sin hallazgos.", encoding="utf8")
    (docs / "c.ann").write_text("T1\tDIS 0 40\tSin hallazgos\n", encoding="utf8")  # offsets past the text
    out = tmp_path / "out"
    summary = run_local(LinkTask(str(tmp_path / "linker"), docs), out, batch_size=2, progress=False)
    assert (summary.written, [n for n, _ in summary.errors]) == (2, ["c"])
    assert "outside the text" in summary.errors[0][1]
    from spacy_clinalign.cli import main

    main(["link", "corpus", str(tmp_path / "linker"), str(docs), str(tmp_path / "cli"), "--batch-size", "2"])
    assert _files(tmp_path / "cli") == _files(out)
    # --mentions pipeline: the pipeline's own NER (here an entity_ruler) finds the mentions in the .txt
    ruler = nlp.add_pipe("entity_ruler", before="icd_linker")
    ruler.add_patterns([{"label": "DIS", "pattern": "neumonía"}, {"label": "DIS", "pattern": [{"LOWER": "quiste"}, {"LOWER": "renal"}]}])
    nlp.to_disk(tmp_path / "ner_linker")
    main(["link", "corpus", str(tmp_path / "ner_linker"), str(docs), str(tmp_path / "ner"), "--mentions", "pipeline"])
    rows = [line.split("\t") for line in (tmp_path / "ner" / "links.tsv").read_text(encoding="utf8").splitlines()[1:]]
    assert [(r[0], r[4], r[5]) for r in rows] == [("a", "neumonía", "J18.9"), ("b", "Quiste renal", "N28.1")]
    assert (out / "a.ann").read_text(encoding="utf8") == (
        "T1\tDIS 13 21\tneumonía\nN1\tReference T1 ICD10:J18.9\tneumonía\n"
        "T2\tSYM 24 30\tfiebre\nN2\tReference T2 ICD10:R50.9\tfiebre\n")
    rows = [line.split("\t") for line in (out / "links.tsv").read_text(encoding="utf8").splitlines()]
    assert rows[0] == LinkTask.HEADER and [(r[0], r[5]) for r in rows[1:]] == [("a", "J18.9"), ("a", "R50.9"), ("b", "N28.1")]


def test_codiesp_x_annotations(tmp_path):
    from spacy_clinalign.io.standoff import read_codiesp_x

    path = tmp_path / "devX.tsv"
    path.write_text("d1\tDIAGNOSTICO\tn44.8\tteste aumentado\t10 25\nd1\tPROCEDIMIENTO\t3e02329\tEstreptomicina intramuscular\t40 54;60 73\n"
                    "d2\tDIAGNOSTICO\tr50.9\tfiebre\t0 6\n", encoding="utf8")
    found = read_codiesp_x([path])
    assert [(e.id, e.label, e.fragments) for e in found["d1"]] == [("T1", "DIAGNOSTICO", [(10, 25)]),
                                                                  ("T2", "PROCEDIMIENTO", [(40, 54), (60, 73)])]
    assert found["d2"][0].text == "fiebre"
    path.write_text("d1\tDIAGNOSTICO\tn44.8\tteste\t10-25\n", encoding="utf8")
    with pytest.raises(ValueError, match=r"devX.tsv:1: malformed CodiEsp-X row"):
        read_codiesp_x([path])
