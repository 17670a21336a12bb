"""The linker's reranker, loaded from a local Hugging Face folder only: one relevance logit for
`query [SEP] description`. Saved with `save_pretrained` inside the pipeline; pickles like the bi-encoder."""
from pathlib import Path
from typing import Optional, Sequence, Tuple, Union

import numpy

from ..encoders import check_encoder_folder, quiet_transformers
from ..torch_runtime import torch_device
from ..models.row_buckets import forward_by_length
from .inference import inference_model, unique_texts


class CrossEncoder:
    def __init__(self, path: Union[str, Path], max_length: int = 96, batch_size: int = 64,
                 device: Optional[str] = None, quantize: str = "none") -> None:
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
        self.quantize = quantize

    def to(self, device: str) -> "CrossEncoder":
        self.device = torch_device(device)
        self.model.to(self.device)
        return self

    def score(self, pairs: Sequence[Tuple[str, str]]) -> numpy.ndarray:
        """One logit per (query, description) pair. Pairs are encoded in batches of similar length (each
        batch is padded to its longest pair; padding is masked, so a logit does not depend on its batch)
        and cut at `max_length` wordpieces."""
        import torch

        pairs, copies = unique_texts([tuple(p) for p in pairs])  # a pair asked twice is scored once
        out = numpy.zeros((len(pairs),), dtype="float32")
        order = sorted(range(len(pairs)), key=lambda i: len(pairs[i][0]) + len(pairs[i][1]))
        model = inference_model(self)
        with torch.inference_mode():
            for start in range(0, len(pairs), self.batch_size):
                rows = order[start:start + self.batch_size]
                batch = self.tokenizer([pairs[i][0] for i in rows], [pairs[i][1] for i in rows], padding=True,
                                       truncation=True, max_length=self.max_length, return_tensors="pt").to(self.device)
                out[rows] = forward_by_length(model, dict(batch)).logits[:, 0].float().cpu().numpy()
        return out if len(out) == len(copies) else out[copies]  # no copy when nothing repeated

    def __getstate__(self):
        return {k: v for k, v in self.__dict__.items() if k != "_int8"}

    def save(self, path: Union[str, Path]) -> None:
        self.model.save_pretrained(str(path))
        self.tokenizer.save_pretrained(str(path))
