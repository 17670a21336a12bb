"""Issue 12 item 6 and the CLI parts of item 7: the command line never destroys inputs, never leaves a
half-written output that looks complete, rejects impossible numbers, and turns OS errors into one line."""
import os
from pathlib import Path

import pytest

from spacy_clinalign.cli import main
from spacy_clinalign.io.atomic import atomic_folder, atomic_open, atomic_write_text
from spacy_clinalign.linking.catalog import Catalog
from spacy_clinalign.linking.linker import CodeLinker
from spacy_clinalign.training.teacher_corpus import TeacherSettings

SRC = "Paciente con neumonía grave.\r\nSin fiebre."
TGT = "Patient with severe pneumonia.\r\nNo fever."


def _corpus(tmp_path: Path):
    src, tgt = tmp_path / "src", tmp_path / "tgt"
    src.mkdir()
    tgt.mkdir()
    (src / "doc1.txt").write_bytes(SRC.encode("utf8"))
    start = SRC.index("neumonía")
    (src / "doc1.ann").write_bytes(f"T1\tDISEASE {start} {start + 14}\tneumonía grave\n".encode("utf8"))
    (tgt / "doc1.txt").write_bytes(TGT.encode("utf8"))
    return src, tgt


def test_project_refuses_to_write_over_its_inputs(tmp_path, tiny_encoder):
    src, tgt = _corpus(tmp_path)
    before = {p: p.read_bytes() for p in list(src.iterdir()) + list(tgt.iterdir())}
    for out in (src, tgt, Path(str(src) + "/../src")):
        with pytest.raises(SystemExit, match=r"error: project: OUTPUT_DIR .* is the (SOURCE|TARGET)_DIR"):
            main(["project", str(tiny_encoder), str(src), str(tgt), str(out), "--layer", "2"])
    assert {p: p.read_bytes() for p in before} == before


def test_project_offsets_match_the_bytes_written_for_crlf_files(tmp_path, tiny_encoder):
    src, tgt = _corpus(tmp_path)
    out = tmp_path / "out"
    main(["project", str(tiny_encoder), str(src), str(tgt), str(out), "--layer", "2", "--threshold", "0.01"])
    assert (out / "doc1.txt").read_bytes() == TGT.encode("utf8")  # CRLF kept, byte for byte
    written = (out / "doc1.txt").read_bytes().decode("utf8")
    lines = [line for line in (out / "doc1.ann").read_text(encoding="utf8").splitlines() if line]
    assert lines, "the projection produced no span to check"
    for line in lines:
        _, label_offsets, text = line.split("\t")
        _, start, end = label_offsets.split()
        assert " ".join(written[int(start):int(end)].split()) == text
    assert not [p.name for p in out.iterdir() if p.name.endswith(".tmp")]


def test_atomic_write_leaves_the_old_file_when_interrupted(tmp_path):
    path = tmp_path / "out.txt"
    atomic_write_text(path, "complete\n")
    with pytest.raises(RuntimeError):
        with atomic_open(path) as handle:
            handle.write("half")
            raise RuntimeError("disk full")
    assert path.read_text() == "complete\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.txt"]
    with pytest.raises(KeyboardInterrupt):
        with atomic_folder(tmp_path / "model") as tmp:
            (tmp / "config.json").write_text("{}")
            raise KeyboardInterrupt  # SIGINT / SIGTERM mid-import
    assert not (tmp_path / "model").exists() and sorted(p.name for p in tmp_path.iterdir()) == ["out.txt"]


def test_bad_numbers_are_usage_errors_and_write_nothing(tmp_path, tiny_encoder, capsys):
    pairs = tmp_path / "pairs.src-tgt"
    pairs.write_text("a b ||| a b\n", encoding="utf8")
    out = tmp_path / "out.pharaoh"
    for flags in (["--batch-size", "0"], ["--batch-size", "-3"], ["--layer", "0"]):
        with pytest.raises(SystemExit) as err:
            main(["align", str(tiny_encoder), str(pairs), str(out), *flags])
        assert err.value.code == 2 and "must be a whole number >= 1" in capsys.readouterr().err
    with pytest.raises(SystemExit) as err:
        main(["evaluate-gold-sets", str(tiny_encoder), str(tmp_path), "--limit", "-1"])
    assert err.value.code == 2 and ">= 0" in capsys.readouterr().err
    with pytest.raises(SystemExit) as err:
        main(["build-teacher", str(pairs), str(tmp_path / "t.spacy"), "--encoder", str(tiny_encoder), "--temperature", "0"])
    assert err.value.code == 2 and "must be a number > 0" in capsys.readouterr().err
    assert not out.exists() and not (tmp_path / "t.spacy").exists()


def test_os_errors_are_one_error_line(tmp_path, tiny_encoder):
    pairs = tmp_path / "pairs.src-tgt"
    pairs.write_text("a b ||| a b\n", encoding="utf8")
    folder_as_output = tmp_path / "a_folder"
    folder_as_output.mkdir()
    with pytest.raises(SystemExit, match=r"^error: .*a_folder is a directory"):
        main(["align", str(tiny_encoder), str(pairs), str(folder_as_output), "--layer", "2"])
    if os.geteuid() != 0:  # root writes into read-only folders anyway
        read_only = tmp_path / "ro"
        read_only.mkdir(mode=0o500)
        with pytest.raises(SystemExit, match=r"^error: .*Permission denied"):
            main(["align", str(tiny_encoder), str(pairs), str(read_only / "x"), "--layer", "2"])


def test_model_settings_that_would_be_silently_wrong_are_refused(tmp_path, tiny_encoder):
    with pytest.raises(ValueError, match=r"temperature must be > 0"):
        TeacherSettings(encoder=str(tiny_encoder), temperature=0.0)
    with pytest.raises(ValueError, match=r"sinkhorn_iterations must be >= 0"):
        TeacherSettings(encoder=str(tiny_encoder), sinkhorn_iterations=-1)
    pairs = tmp_path / "pairs.src-tgt"
    pairs.write_text("a b ||| a b\n", encoding="utf8")
    with pytest.raises(SystemExit, match=r"layer 9 requested but .* has only 2 layers"):
        main(["build-teacher", str(pairs), str(tmp_path / "t.spacy"), "--encoder", str(tiny_encoder), "--layer", "9"])
    with pytest.raises(SystemExit, match=r"layer 3 requested but .* has only 2 layers"):
        main(["align", str(tiny_encoder), str(pairs), str(tmp_path / "o"), "--layer", "3"])


def test_import_e5_if_missing_refuses_an_incomplete_folder(tmp_path):
    partial = tmp_path / "e5"
    partial.mkdir()
    (partial / "config.json").write_text("{}")  # what an interrupted, non-atomic import used to leave
    with pytest.raises(SystemExit, match=r"holds an incomplete encoder .* Remove the folder"):
        main(["encoder", "import-e5", str(partial), "--if-missing"])


def test_linker_refuses_codes_without_descriptions_at_build():
    catalog = Catalog([("J18.9", ["neumonía"])])
    catalog.add("E11.9", [])
    with pytest.raises(ValueError, match=r"1 catalogue codes have no description to index, e.g. \['E11.9'\]"):
        CodeLinker(catalog, channels="bm25")
