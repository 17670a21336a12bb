"""Optional dependencies: the core install has no linking or cluster packages. Importing one through
`require` turns a bare ModuleNotFoundError into a message naming the extra that brings it."""
import importlib
from types import ModuleType

EXTRA_OF = {
    "faiss": "linking", "bm25s": "linking", "sentence_transformers": "linking",
    "simple_icd_10_cm": "linking", "cie": "linking", "peft": "linking", "ray": "ray",
}


def require(module: str) -> ModuleType:
    """Import `module`, or raise an ImportError that says `pip install spacy-clinalign[EXTRA]`."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as err:
        if err.name != module.split(".")[0]:
            raise
        extra = EXTRA_OF.get(module.split(".")[0], "linking")
        raise ImportError(f"{module} is not installed; it comes with the optional extra: "
                          f"pip install 'spacy-clinalign[{extra}]'") from None
