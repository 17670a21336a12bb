"""The linker's reranker, loaded from a local Hugging Face folder only: one relevance logit for
`query [SEP] description`. Saved with `save_pretrained` inside the pipeline; pickles like the bi-encoder."""
from pathlib import Path
from typing import Optional, Sequence, Tuple, Union

import numpy

from ..encoders import check_encoder_folder, quiet_transformers
from ..torch_runtime import torch_device


class CrossEncoder:
    def __init__(self, path: Union[str, Path], max_length: int = 128, batch_size: int = 64,
                 device: Optional[str] = None) -> None:
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        folder = check_encoder_folder(str(path), "icd_linker cross-encoder")
        with quiet_transformers():
            self.tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
            self.model = AutoModelForSequenceClassification.from_pretrained(
                str(folder), num_labels=1, local_files_only=True)
        self.model.eval()
        self.device = torch_device(device)
        self.model.to(self.device)
        self.max_length, self.batch_size = max_length, batch_size

    def to(self, device: str) -> "CrossEncoder":
        self.device = torch_device(device)
        self.model.to(self.device)
        return self

    def score(self, pairs: Sequence[Tuple[str, str]]) -> numpy.ndarray:
        """One logit per (query, description) pair."""
        import torch

        out = numpy.zeros((len(pairs),), dtype="float32")
        with torch.inference_mode():
            for start in range(0, len(pairs), self.batch_size):
                chunk = pairs[start:start + self.batch_size]
                batch = self.tokenizer([q for q, _ in chunk], [d for _, d in chunk], padding=True,
                                       truncation=True, max_length=self.max_length, return_tensors="pt").to(self.device)
                out[start:start + len(chunk)] = self.model(**batch).logits[:, 0].float().cpu().numpy()
        return out

    def save(self, path: Union[str, Path]) -> None:
        self.model.save_pretrained(str(path))
        self.tokenizer.save_pretrained(str(path))
