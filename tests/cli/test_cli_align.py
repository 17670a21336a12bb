import pytest

from spacy_clinalign.cli import main
from spacy_clinalign.io.alignment_files import read_links


def test_align_then_evaluate(tmp_path, tiny_encoder, capsys):
    par = tmp_path / "pairs.src-tgt"
    par.write_text("la casa es pequeña ||| the house is small\ndolor abdominal ||| abdominal pain\n", encoding="utf8")
    gold = tmp_path / "pairs.gold"
    gold.write_text("1-1 2-2 3-3 4p4\n1-2 2-1\n", encoding="utf8")
    out = tmp_path / "pred.txt"
    html = tmp_path / "view.html"
    main(["align", str(tiny_encoder), str(par), str(out), "--layer", "2", "--probs", "--html", str(html)])
    lines = out.read_text(encoding="utf8").splitlines()
    assert len(lines) == 2 and all(lines)
    assert ":" in lines[0].split()[0]  # --probs
    assert "<table>" in html.read_text(encoding="utf8")
    pred = read_links(out)
    assert all(0 <= j < 4 and 0 <= i < 4 for j, i, _ in pred[0])
    main(["evaluate-alignment", str(out), str(gold), "--one-based"])
    printed = capsys.readouterr().out
    assert "align_aer" in printed and "align_f" in printed


def test_cli_errors_are_clear(tmp_path):
    pairs = tmp_path / "x.src-tgt"
    pairs.write_text("a ||| b\n", encoding="utf8")
    with pytest.raises(SystemExit, match="encoder folder .*no-model.* does not exist"):
        main(["align", str(tmp_path / "no-model"), str(pairs), str(tmp_path / "y")])
    with pytest.raises(SystemExit, match="Alignment file not found"):
        main(["align", str(tmp_path / "no-model"), str(tmp_path / "missing"), str(tmp_path / "y")])
    pred, gold = tmp_path / "p", tmp_path / "g"
    pred.write_text("0-0\n", encoding="utf8")
    gold.write_text("1-1\n1-1\n", encoding="utf8")
    with pytest.raises(SystemExit, match="has 1 lines but .* has 2"):
        main(["evaluate-alignment", str(pred), str(gold), "--one-based"])


def test_demo_runs_without_pretrained_encoder(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SPACY_CLINALIGN_ENCODER", str(tmp_path / "no-encoder-here"))
    main(["demo", "--out", str(tmp_path / "demo")])
    out = capsys.readouterr()
    assert "tiny random-weight encoder" in out.err
    assert "Pharaoh:" in out.out and "->" in out.out
    assert (tmp_path / "demo" / "alignment.html").exists()


def test_project_yml_is_valid():
    from pathlib import Path

    from weasel.util import load_project_config

    config = load_project_config(Path(__file__).resolve().parents[2])
    assert "evaluate-alignment" in config["workflows"]
    assert {c["name"] for c in config["commands"]} >= {"import-encoder", "evaluate-gold-sets", "bench-align"}


def test_evaluate_gold_sets_prints_each_method(tmp_path, tiny_encoder, capsys):
    import json

    data = tmp_path / "alignment"
    (data / "awesome-align").mkdir(parents=True)
    (data / "awesome-align" / "enfr.src-tgt").write_text("the house ||| la maison\n", encoding="utf8")
    (data / "awesome-align" / "enfr.gold").write_text("1-1 2-2\n", encoding="utf8")
    out = tmp_path / "rows.json"
    main(["evaluate-gold-sets", str(tiny_encoder), str(data), "--sets", "en-fr", "--layer", "2", "--output", str(out)])
    printed = capsys.readouterr().out
    assert "awesome-align fine-tuned 4.1" in printed
    rows = json.loads(out.read_text(encoding="utf8"))
    assert [r["method"] for r in rows] == ["argmax", "itermax", "threshold"]
    assert all(0 <= r["aer"] <= 100 for r in rows)
    with pytest.raises(SystemExit, match="unknown gold set"):
        main(["evaluate-gold-sets", str(tiny_encoder), str(data), "--sets", "xx-yy", "--layer", "2"])


def test_evaluate_gold_sets_refuses_a_malformed_record_unless_asked_to_skip_it(tmp_path, tiny_encoder, capsys):
    import json

    folder = tmp_path / "alignment" / "binaryalign" / "valid" / "en-ja"
    folder.mkdir(parents=True)
    good = {"src_words": ["the", "house"], "tgt_words": ["la", "maison"], "alignment": [[0, 0], [1, 1]]}
    bad = {"src_words": ["a"], "tgt_words": ["b"], "alignment": [[0, 3]]}
    (folder / "kftt.jsonl").write_text("\n".join(json.dumps(r) for r in (good, bad, good)) + "\n", encoding="utf8")
    args = ["evaluate-gold-sets", str(tiny_encoder), str(tmp_path / "alignment"), "--sets", "en-ja", "--layer", "2",
            "--methods", "argmax"]
    with pytest.raises(SystemExit, match=r"kftt\.jsonl:2: link 0-3 is outside the pair"):
        main(args)
    out = tmp_path / "rows.json"
    main(args + ["--skip-malformed", "--output", str(out)])
    printed = capsys.readouterr().out
    assert "en-ja: 1 malformed gold records left out" in printed and "kftt.jsonl:2" in printed
    (row,) = json.loads(out.read_text(encoding="utf8"))
    assert row["pairs"] == 2 and row["skipped"] == 1


def test_every_project_command_of_ours_parses():
    """Each `python -m spacy_clinalign ...` line of project.yml (vars filled in) is accepted by our CLI's parser,
    so a renamed or mistyped flag in a workflow fails here, not an hour into `spacy project run`."""
    import re
    import shlex
    from pathlib import Path

    from weasel.util import load_project_config

    from spacy_clinalign.cli import build_parser

    config = load_project_config(Path(__file__).resolve().parents[2], interpolate=True)
    parser = build_parser()
    checked = 0
    for command in config["commands"]:
        for line in command.get("script", []):
            words = shlex.split(line)
            if words[:3] != ["python", "-m", "spacy_clinalign"]:
                continue
            assert not re.search(r"\$\{", line), line
            args = words[3:words.index("&&")] if "&&" in words else words[3:]
            parser.parse_args(args)  # argparse exits (SystemExit) on an unknown command or flag
            checked += 1
    assert checked >= 20
