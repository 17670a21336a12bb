"""The linker's retrieval encoder, loaded from a local Hugging Face folder only: mean-pooled,
L2-normalised embeddings (E5's `query: ` / `passage: ` prefixes by default), so a dot product is a
cosine. It saves itself with `save_pretrained` into a folder of the pipeline and pickles (a plain torch
module and a fast tokenizer), which `nlp.pipe(n_process=2)` and multiprocessing users need."""
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy

from ..encoders import check_encoder_folder, quiet_transformers
from ..torch_runtime import torch_device
from ..models.row_buckets import forward_by_length
from .inference import inference_model, unique_texts


class BiEncoder:
    def __init__(self, path: Union[str, Path], query_prefix: str = "query: ", passage_prefix: str = "passage: ",
                 max_length: int = 64, batch_size: int = 128, device: Optional[str] = None,
                 quantize: str = "none") -> None:
        from transformers import AutoModel, AutoTokenizer

        folder = check_encoder_folder(str(path), "icd_linker bi-encoder")
        with quiet_transformers():
            self.tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
            self.model = AutoModel.from_pretrained(str(folder), local_files_only=True)
        self.model.eval()
        self.device = torch_device(device)
        self.model.to(self.device)
        self.query_prefix, self.passage_prefix = query_prefix, passage_prefix
        self.max_length, self.batch_size = max_length, batch_size
        self.quantize = quantize

    @property
    def dim(self) -> int:
        return int(self.model.config.hidden_size)

    def to(self, device: str) -> "BiEncoder":
        self.device = torch_device(device)
        self.model.to(self.device)
        return self

    def encode(self, texts: Sequence[str], kind: str = "query", progress: bool = False) -> numpy.ndarray:
        """(len(texts), dim) float32, unit length; `kind` picks the prefix ("query" or "passage")."""
        import torch

        if kind not in ("query", "passage"):
            raise ValueError(f"kind must be 'query' or 'passage', not {kind!r}")
        prefix = self.query_prefix if kind == "query" else self.passage_prefix
        # Each distinct text is encoded once (mentions repeat: "dolor", "fiebre"); sorting by length keeps
        # padding low, and each batch runs in length sub-batches (models/row_buckets.py).
        texts, copies = unique_texts(texts)
        out = numpy.zeros((len(texts), self.dim), dtype="float32")
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        starts = range(0, len(texts), self.batch_size)
        if progress:
            from tqdm import tqdm

            starts = tqdm(starts, desc=f"encoding {kind}s", unit="batch")
        model = inference_model(self)
        with torch.inference_mode():
            for start in starts:
                rows = order[start:start + self.batch_size]
                batch = self.tokenizer([prefix + texts[i] for i in rows], padding=True, truncation=True,
                                       max_length=self.max_length, return_tensors="pt").to(self.device)
                hidden = forward_by_length(model, dict(batch)).last_hidden_state
                mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
                pooled = torch.nn.functional.normalize(pooled.float(), dim=-1)
                out[rows] = pooled.cpu().numpy()
        return out if len(out) == len(copies) else out[copies]  # no copy when nothing repeated

    def __getstate__(self):
        return {k: v for k, v in self.__dict__.items() if k != "_int8"}

    def save(self, path: Union[str, Path]) -> None:
        self.model.save_pretrained(str(path))
        self.tokenizer.save_pretrained(str(path))
