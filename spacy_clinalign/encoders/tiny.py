"""A tiny BERT encoder trained from scratch on a few sentences: for tests and for the demo when no
pretrained encoder is installed. Its vectors are random-weight features, so its alignments mostly
follow position; it exists so that everything runs with no download."""
from collections import Counter
from pathlib import Path
from typing import Iterable, Optional

TINY_CORPUS = [
    "La prueba reveló una deficiencia de calcio y potasio , probablemente resultado de su dieta .",
    "The test revealed a calcium and potassium deficiency , probably a result of her diet .",
    "De test wees op een kalium- en calciumtekort , gevolg van haar dieet .",
    "Il test ha rivelato una carenza di calcio e potassio .",
    "Paciente de 67 años con neumonía J18.9 y diabetes mellitus tipo 2 E11.9 .",
    "Patient aged 67 with pneumonia J18.9 and type 2 diabetes mellitus E11.9 .",
    "Se realizó una tomografía computarizada de tórax que mostró un derrame pleural .",
    "A chest computed tomography was performed which showed a pleural effusion .",
    "Dolor abdominal , fiebre de 38,5 ºC y vómitos desde hace 3 días .",
    "Abdominal pain , fever of 38.5 °C and vomiting for 3 days .",
    "the house is small . das Haus ist klein . la casa es pequeña . la maison est petite .",
    "approval of the minutes of the previous sitting aprobación del acta de la sesión anterior",
]


def build_tiny_bert(out_dir: Path, texts: Optional[Iterable[str]] = None, layers: int = 2, seed: int = 0,
                    vocab_size: int = 600, model_max_length: int = 128, max_position_embeddings: int = 160) -> Path:
    """Build a WordPiece vocabulary from `texts` (default: a built-in clinical sample) and save a random
    2-layer, 32-wide BERT with it as a Hugging Face folder (~3 s, ~300 KB). Deterministic for a given seed.
    model_max_length / max_position_embeddings: a small limit makes window truncation cheap to test."""
    import torch
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers
    from transformers import BertConfig, BertModel, BertTokenizerFast

    corpus = list(texts) if texts is not None else TINY_CORPUS
    normalizer = normalizers.BertNormalizer(lowercase=True)
    pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    # Digits, dots and capitals inside words become [UNK] unless the alphabet covers them.
    alphabet = list("abcdefghijklmnopqrstuvwxyzáéíóúñüàèìòùç0123456789.,-ºª°%/()")
    # The vocabulary is counted here rather than by tokenizers' WordPieceTrainer: the trainer breaks ties
    # between equally frequent merges in hash order, so its vocabulary (and every test model) changed
    # from one process to the next. Whole words by frequency, then characters, is the same every time.
    counts: Counter = Counter()
    for text in corpus:
        counts.update(word for word, _ in pre_tokenizer.pre_tokenize_str(normalizer.normalize_str(text)))
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    pieces = specials + alphabet + ["##" + c for c in alphabet]
    known = set(pieces)
    words = [w for w, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])) if w not in known]
    vocab = pieces + words[:max(0, vocab_size - len(pieces))]
    tok = Tokenizer(models.WordPiece({piece: i for i, piece in enumerate(vocab)}, unk_token="[UNK]"))
    tok.normalizer = normalizer
    tok.pre_tokenizer = pre_tokenizer
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tok.save(str(out_dir / "tokenizer.json"))
    fast = BertTokenizerFast(tokenizer_file=str(out_dir / "tokenizer.json"), model_max_length=model_max_length)
    fast.save_pretrained(out_dir)
    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=fast.vocab_size, hidden_size=32, num_hidden_layers=layers, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=max_position_embeddings,
    )
    BertModel(config).save_pretrained(out_dir)
    return out_dir
