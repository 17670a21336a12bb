"""Untrusted pipeline folders: each attack is crafted on a real saved pipeline (tiny encoder), by editing
the transformer bytes spacy-transformers stores inside the component's `model` file. `spacy.load` must
refuse with a clear message, run no code and write nothing outside its folder."""
import json
import pathlib
import pickle
import shutil

import pytest
import spacy
import srsly
import transformers.dynamic_module_utils as hf_dynamic

from spacy_clinalign import make_pair
from spacy_clinalign.models.safe_shim import check_file_name
from tests.conftest import aligner_config, initialized_aligner, initialized_ner
from tests.pipeline.test_bio_ner_cnn import make_examples

SRC = "La prueba reveló una deficiencia de calcio y potasio."
TGT = "The test revealed a calcium and potassium deficiency."
NER_TEXT = "Paciente con neumonía y fiebre alta ."


_aligner = initialized_aligner
_ner_inline = initialized_ner


def _ner_listener(encoder):
    """configs/ner_cnn.cfg's shape: a shared `transformer` component and a listening bio_ner_cnn."""
    nlp = spacy.blank("es")
    nlp.add_pipe("transformer", config={"model": {
        "@architectures": "spacy-clinalign.TransformerModel.v1", "name": str(encoder),
        "tokenizer_config": {"use_fast": True},
        "get_spans": {"@span_getters": "spacy-transformers.strided_spans.v1", "window": 32, "stride": 24},
    }})
    nlp.add_pipe("bio_ner_cnn", config={"model": {"@architectures": "spacy-clinalign.CNNTagger.v1", "width": 32,
                                                  "tok2vec": {"@architectures": "spacy-transformers.TransformerListener.v1",
                                                              "grad_factor": 1.0, "upstream": "*",
                                                              "pooling": {"@layers": "reduce_mean.v1"}}}})
    examples = make_examples(nlp)
    nlp.initialize(lambda: examples)
    return nlp


PIPELINES = {
    "clinical_aligner": (_aligner, "clinical_aligner"),
    "bio_ner_cnn": (_ner_inline, "bio_ner_cnn"),
    "bio_ner_cnn+transformer": (_ner_listener, "transformer"),
}


@pytest.fixture(scope="module")
def saved(tiny_encoder, tmp_path_factory):
    """One saved folder per pipeline kind, with its output on a fixed input."""
    out = {}
    for kind, (build, _) in PIPELINES.items():
        nlp = build(tiny_encoder)
        folder = tmp_path_factory.mktemp("saved") / kind
        nlp.to_disk(folder)
        out[kind] = (folder, _output(nlp))
    return out


def _output(nlp):
    if "clinical_aligner" in nlp.pipe_names:
        return nlp(make_pair(spacy.blank("es")(SRC), TGT, nlp))._.alignment.links.tolist()
    doc = nlp(NER_TEXT)
    return {label: probs.round(4).tolist() for label, probs in doc._.bio_probs.items()}


def _copy(saved, kind, tmp_path):
    folder = tmp_path / "pipeline"
    shutil.copytree(saved[kind][0], folder)
    return folder


def tamper(folder, component, edit):
    """Apply `edit` to every spacy-transformers payload (config, state, tokenizer files) in `component`."""
    path = folder / component / "model"
    msg = srsly.msgpack_loads(path.read_bytes())
    edited = 0
    for node_shims in msg["shims"]:
        for k, shim_bytes in enumerate(node_shims):
            payload = srsly.msgpack_loads(shim_bytes)
            if isinstance(payload, dict) and "tokenizer" in payload:
                edit(payload)
                node_shims[k] = srsly.msgpack_dumps(payload)
                edited += 1
    assert edited == 1, f"expected one transformer payload in {path}, found {edited}"
    path.write_bytes(srsly.msgpack_dumps(msg))


@pytest.fixture
def hf_modules(tmp_path, monkeypatch):
    """Where transformers would copy remote code before importing it: kept inside tmp_path."""
    modules = tmp_path / "hf_modules"
    monkeypatch.setattr(hf_dynamic, "HF_MODULES_CACHE", str(modules))
    return modules


def _files_outside(tmp_path, folder):
    return sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*")
                  if p.is_file() and folder not in p.parents and "hf_modules" not in p.parts)


@pytest.mark.parametrize("kind", list(PIPELINES))
def test_untampered_pipeline_loads_and_gives_the_same_output(saved, kind):
    folder, expected = saved[kind]
    assert _output(spacy.load(folder)) == expected


@pytest.mark.parametrize("kind", list(PIPELINES))
def test_remote_code_in_saved_tokenizer_is_refused(saved, kind, tmp_path, hf_modules):
    """trust_remote_code in the saved kwargs + an auto_map + a .py file: transformers would import it."""
    folder = _copy(saved, kind, tmp_path)
    marker = tmp_path / "remote_code_ran"
    code = (f"import pathlib\npathlib.Path({str(marker)!r}).write_text('pwned')\n"
            "from transformers import BertTokenizerFast\n\nclass EvilTokenizer(BertTokenizerFast):\n    pass\n")

    def edit(payload):
        tok = payload["tokenizer"]
        tok["kwargs"] = {**tok.get("kwargs", {}), "trust_remote_code": True}
        tok_config = json.loads(tok["tokenizer_config.json"])
        tok_config["auto_map"] = {"AutoTokenizer": ["evil.EvilTokenizer", "evil.EvilTokenizer"]}
        tok["tokenizer_config.json"] = json.dumps(tok_config).encode("utf8")
        tok["evil.py"] = code.encode("utf8")

    tamper(folder, PIPELINES[kind][1], edit)
    with pytest.raises(ValueError, match="refused to load the encoder.*(trust_remote_code|auto_map|evil.py)"):
        spacy.load(folder)
    assert not marker.exists()
    assert not hf_modules.exists()


@pytest.mark.parametrize("part", ["kwargs", "tokenizer_config", "model_config", "py_file"])
def test_each_remote_code_ingredient_alone_is_refused(saved, part, tmp_path, hf_modules):
    folder = _copy(saved, "clinical_aligner", tmp_path)

    def edit(payload):
        tok = payload["tokenizer"]
        if part == "kwargs":
            tok["kwargs"] = {"use_fast": True, "trust_remote_code": True}
        elif part == "tokenizer_config":
            cfg = json.loads(tok["tokenizer_config.json"])
            cfg["auto_map"] = {"AutoTokenizer": ["evil.EvilTokenizer", None]}
            tok["tokenizer_config.json"] = json.dumps(cfg).encode("utf8")
        elif part == "model_config":
            payload["config"]["auto_map"] = {"AutoModel": "evil.EvilModel"}
        else:
            tok["evil.py"] = b"raise SystemExit('should never be imported')\n"

    tamper(folder, "clinical_aligner", edit)
    with pytest.raises(ValueError, match="refused to load the encoder"):
        spacy.load(folder)


@pytest.mark.parametrize("kind", list(PIPELINES))
@pytest.mark.parametrize("style", ["absolute", "dotdot"])
def test_tokenizer_file_names_cannot_write_outside(saved, kind, style, tmp_path):
    folder = _copy(saved, kind, tmp_path)
    outside = tmp_path / "outside"
    outside.mkdir()
    target = outside / "written.json"
    # spacy-transformers writes each saved file to `temp_dir / name` (temp_dir is a fresh /tmp/tmpXXXX).
    name = str(target) if style == "absolute" else "../" * 40 + str(target).lstrip("/")

    def edit(payload):
        payload["tokenizer"][name] = b'{"pwned": true}'

    tamper(folder, PIPELINES[kind][1], edit)
    with pytest.raises(ValueError, match="refused to load the encoder.*not a plain file name"):
        spacy.load(folder)
    assert not target.exists()
    assert _files_outside(tmp_path, folder) == []


class _TouchOnUnpickle:
    """A pickle that creates a file when it is loaded (what a malicious weights blob would do)."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (pathlib.Path.touch, (pathlib.Path(self.path),))


@pytest.mark.parametrize("kind", list(PIPELINES))
def test_pickled_code_in_weights_is_refused(saved, kind, tmp_path, monkeypatch):
    """torch.load without weights_only unpickles arbitrary objects; torch >= 2.6 defaults to weights_only,
    but TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD (or an older torch) turns that default off again."""
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    folder = _copy(saved, kind, tmp_path)
    marker = tmp_path / "unpickled_code_ran"

    def edit(payload):
        payload["state"] = pickle.dumps(_TouchOnUnpickle(marker))

    tamper(folder, PIPELINES[kind][1], edit)
    with pytest.raises(ValueError, match="refused to load the encoder.*not a plain tensor state dict"):
        spacy.load(folder)
    assert not marker.exists()


@pytest.mark.parametrize("name", ["../x.json", "/tmp/x.json", "a/b.json", "a\\b.json", "..", "C:x.json", "",
                                  "x.py", "x.so", "x\x00.json"])
def test_file_name_check(name):
    with pytest.raises(ValueError):
        check_file_name(name, "test")


def test_plain_tokenizer_file_names_pass():
    for name in ("tokenizer.json", "vocab.txt", "sentencepiece.bpe.model", "special_tokens_map.json"):
        assert check_file_name(name, "test") == name


def test_remote_code_settings_in_the_config_are_refused(tiny_encoder):
    nlp = spacy.blank("en")
    cfg = aligner_config(tiny_encoder)
    cfg["model"]["tokenizer_config"] = {"use_fast": True, "trust_remote_code": True}
    with pytest.raises(ValueError, match="trust_remote_code"):
        nlp.add_pipe("clinical_aligner", config=cfg)
