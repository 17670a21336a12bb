"""Where local encoder folders live, and how config names resolve to them (no hub access, ever)."""
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

DEFAULT_ENCODER = "clinalign-e5-small"


def default_encoder_dir() -> Path:
    """Folder that `encoder import-e5` fills by default: $SPACY_CLINALIGN_ENCODER, else the user cache."""
    env = os.environ.get("SPACY_CLINALIGN_ENCODER")
    if env:
        return Path(env)
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "spacy-clinalign" / "multilingual-e5-small"


def resolve_encoder(name: str) -> str:
    """Map the alias `clinalign-e5-small` to the default folder; any other name is a local path."""
    return str(default_encoder_dir()) if name == DEFAULT_ENCODER else name


def check_encoder_folder(name: str, component: str) -> Path:
    """Raise a clear error unless `name` resolves to a local Hugging Face model folder."""
    path = Path(resolve_encoder(name))
    if not path.exists():
        hint = (
            " Build it with `python -m spacy_clinalign encoder import-e5` (needs the [e5] extra)."
            if name == DEFAULT_ENCODER
            else ""
        )
        raise ValueError(
            f"{component}: the encoder folder {str(path)!r} does not exist. spacy-clinalign loads models "
            f"from local folders only (no Hugging Face hub access).{hint}"
        )
    if not (path / "config.json").exists():
        raise ValueError(f"{component}: {str(path)!r} is not a Hugging Face model folder (no config.json in it)")
    return path


@contextmanager
def quiet_transformers() -> Iterator[None]:
    """Silence transformers' loading warnings: cutting the upper layers off an encoder is intended, and
    would otherwise log every unused weight."""
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
