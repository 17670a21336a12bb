"""Training the linker's two encoders.

Bi-encoder: sentence-transformers' MultipleNegativesRankingLoss (in-batch negatives) over
(mention or synonym, code description) pairs, mean pooling, AdamW with linear warm-up, as in the paper.
Cross-encoder: started from the bi-encoder's weights with a new one-logit head; listwise softmax
cross-entropy over groups of 1 positive + up to 9 hard negatives (siblings in the same category and the
bi-encoder's nearest wrong codes), gradient clipping at 1.0. Both write plain Hugging Face folders that
`icd_linker.initialize(bi_encoder=..., cross_encoder=...)` loads."""
import random
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Tuple, Union

from ..encoders import check_encoder_folder, quiet_transformers
from ..extras import require
from ..io.linking_mentions import Mention
from ..torch_runtime import torch_device
from .catalog import Catalog
from .linker import CodeLinker
from .queries import format_query

Pair = Tuple[str, str]  # (query text, code)


def mention_training_pairs(mentions: Iterable[Mention], catalog: Catalog) -> Tuple[List[Pair], int]:
    """(mention text, code) for mentions whose (single) code is in the catalogue; also the skipped count."""
    pairs, skipped = [], 0
    for m in mentions:
        for code in m.codes:
            if "-" in code or code not in catalog:
                skipped += 1
                continue
            pairs.append((format_query(m.text), code))
    return pairs, skipped


def catalog_training_pairs(catalog: Catalog, limit: Optional[int] = None, seed: int = 0) -> List[Pair]:
    """Pairs the catalogue gives for free: each non-title description (inclusion term, translation,
    synonym) as a query for its code, and each code title as a query for its code (the positive text is
    then another description, or the parent's title when there is none)."""
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 0):
        raise ValueError(f"catalog_training_pairs: limit must be an integer >= 0 or None, got {limit!r}")
    pairs = []
    for entry in catalog:
        for text in entry.descriptions[1:]:
            pairs.append((text, entry.code))
    rng = random.Random(seed)
    rng.shuffle(pairs)
    return pairs[:limit] if limit is not None else pairs


def positive_text(catalog: Catalog, query: str, code: str, rng: random.Random) -> str:
    """A description of `code` other than the query itself (the title when it differs)."""
    descriptions = [d for d in catalog[code].descriptions if d.lower() != query.lower()]
    if not descriptions:
        parent = code[:-1].rstrip(".")
        return catalog[parent].title if len(parent) >= 3 and parent in catalog else catalog[code].title
    return descriptions[0] if rng.random() < 0.5 else rng.choice(descriptions)


def _batches_without_repeated_codes(pairs: Sequence[Pair], batch_size: int, rng: random.Random) -> List[List[Pair]]:
    """Shuffle, then fill batches so that no code appears twice in one (it would be a false in-batch negative)."""
    order = list(pairs)
    rng.shuffle(order)
    batches: List[List[Pair]] = []
    pending = order
    while pending:
        batch, codes, rest = [], set(), []
        for pair in pending:
            if len(batch) < batch_size and pair[1] not in codes:
                batch.append(pair)
                codes.add(pair[1])
            else:
                rest.append(pair)
        if len(batch) < 2:
            break
        batches.append(batch)
        pending = rest
    return batches


def _optimiser(model, plan: List, max_steps: Optional[int], lr: float, warmup: float):
    """The plan cut to `max_steps`, AdamW and a linear warm-up/decay schedule over it (both trainers)."""
    import torch
    from transformers import get_linear_schedule_with_warmup

    if max_steps is not None:
        plan = plan[:max_steps]
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr)
    scheduler = get_linear_schedule_with_warmup(optimizer, int(len(plan) * warmup), max(1, len(plan)))
    return plan, optimizer, scheduler


def _step(loss, model, optimizer, scheduler) -> float:
    """One optimiser step with gradient clipping at 1.0; returns the loss value."""
    import torch

    optimizer.zero_grad()
    loss.backward()
    torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], 1.0)
    optimizer.step()
    scheduler.step()
    return float(loss.detach())


def _loss_summary(losses: List[float]) -> Dict[str, float]:
    """Step count and the mean loss over the first and last tenth of training."""
    tenth = max(1, len(losses) // 10)
    return {"steps": len(losses), "loss_first": sum(losses[:tenth]) / tenth, "loss_last": sum(losses[-tenth:]) / tenth}


def train_bi_encoder(model_path: Union[str, Path], out_dir: Union[str, Path], pairs: Sequence[Pair],
                     catalog: Catalog, *, epochs: int = 1, batch_size: int = 32, lr: float = 2e-5,
                     warmup: float = 0.1, max_length: int = 64, max_steps: Optional[int] = None,
                     query_prefix: str = "query: ", passage_prefix: str = "passage: ", device: Optional[str] = None,
                     seed: int = 0, progress: bool = True, train_layers: Optional[int] = None) -> Dict[str, float]:
    """Fine-tune a local encoder folder with MultipleNegativesRankingLoss; save it to `out_dir`.

    `train_layers=N` trains only the top N transformer layers (embeddings, lower layers and pooler stay
    frozen): cheaper steps on a CPU, and a shippable fp16 delta of N layers instead of the whole encoder."""
    import torch
    st = require("sentence_transformers")
    SentenceTransformer, losses, models = st.SentenceTransformer, st.losses, st.models
    from tqdm import tqdm

    folder = check_encoder_folder(str(model_path), "train-bi-encoder")
    if len(pairs) < 2:
        raise ValueError(f"train-bi-encoder needs at least 2 training pairs, got {len(pairs)}")
    torch.manual_seed(seed)
    rng = random.Random(seed)
    dev = torch_device(device)
    with quiet_transformers():
        transformer = models.Transformer(str(folder), max_seq_length=max_length,
                                         model_args={"local_files_only": True}, tokenizer_args={"local_files_only": True})
    pooling = models.Pooling(transformer.get_word_embedding_dimension(), pooling_mode="mean")
    model = SentenceTransformer(modules=[transformer, pooling], device=str(dev))
    trained = freeze_below_top_layers(transformer.auto_model, train_layers)
    loss_fn = losses.MultipleNegativesRankingLoss(model)
    plan = [b for _ in range(epochs) for b in _batches_without_repeated_codes(pairs, batch_size, rng)]
    plan, optimizer, scheduler = _optimiser(model, plan, max_steps, lr, warmup)
    model.train()
    losses_seen: List[float] = []
    for batch in tqdm(plan, desc="bi-encoder", disable=not progress):
        queries = [query_prefix + q for q, _ in batch]
        positives = [passage_prefix + positive_text(catalog, q, c, rng) for q, c in batch]
        features = []
        for texts in (queries, positives):
            feats = model.tokenize(texts)
            features.append({k: v.to(dev) for k, v in feats.items()})
        loss = loss_fn(features, None)
        losses_seen.append(_step(loss, model, optimizer, scheduler))
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    transformer.auto_model.save_pretrained(str(out_dir))
    transformer.tokenizer.save_pretrained(str(out_dir))
    return {**_loss_summary(losses_seen), "trained_parameters": trained}


def freeze_below_top_layers(model, train_layers: Optional[int]) -> int:
    """Leave only the top `train_layers` encoder layers trainable (None: everything); returns the number
    of trainable parameters. Frozen parameters get no gradient, so AdamW never touches them."""
    if train_layers is not None:
        layers = getattr(getattr(model, "encoder", None), "layer", None)
        if layers is None:
            raise ValueError(f"--train-layers: {type(model).__name__} has no encoder.layer list to freeze below")
        if isinstance(train_layers, bool) or not isinstance(train_layers, int) or not 1 <= train_layers <= len(layers):
            raise ValueError(f"--train-layers must be an integer from 1 to {len(layers)} (the encoder's layer "
                             f"count), got {train_layers!r}")
        for param in model.parameters():
            param.requires_grad_(False)
        for layer in layers[len(layers) - train_layers:]:
            for param in layer.parameters():
                param.requires_grad_(True)
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def hard_negative_groups(pairs: Sequence[Pair], linker: CodeLinker, n_negatives: int = 9, n_siblings: int = 4,
                         seed: int = 0, batch_size: int = 256) -> List[Tuple[str, List[str]]]:
    """(query, [positive description, negative descriptions...]) with up to `n_siblings` same-category
    codes and the bi-encoder's nearest wrong codes filling the rest."""
    rng = random.Random(seed)
    queries = [q for q, _ in pairs]
    neighbours: List[List] = []
    for start in range(0, len(queries), batch_size):
        neighbours.extend(linker.retrieve(queries[start:start + batch_size], k=n_negatives + 1, channels="dense")
                          if linker.bi_encoder is not None else [[] for _ in queries[start:start + batch_size]])
    title_row = {}
    for row, code in enumerate(linker.codes):
        title_row.setdefault(code, row)
    groups = []
    for (query, code), near in zip(pairs, neighbours):
        siblings = linker.catalog.siblings(code)
        rng.shuffle(siblings)
        negatives = [(c, title_row[c]) for c in siblings[:n_siblings]]
        taken = {code, *(c for c, _ in negatives)}
        for other, _, row in near:
            if len(negatives) >= n_negatives:
                break
            if other not in taken:
                negatives.append((other, row))
                taken.add(other)
        if not negatives:
            continue
        # The positive reads as the linker will show it: the gold code's description that retrieval
        # matched when the bi-encoder finds it, else another of its descriptions.
        matched = [row for other, _, row in near if other == code]
        if matched:
            positive = linker.describe(code, matched[0])
        else:
            first = title_row[code]
            rows = list(range(first, first + len(linker.catalog[code].descriptions)))
            rows = [r for r in rows if linker.texts[r].lower() != query.lower()] or rows
            positive = linker.describe(code, rng.choice(rows))
        groups.append((query, [positive] + [linker.describe(c, r) for c, r in negatives]))
    return groups


def train_cross_encoder(model_path: Union[str, Path], out_dir: Union[str, Path],
                        groups: Sequence[Tuple[str, List[str]]], *, epochs: int = 1, group_batch: int = 8,
                        lr: float = 2e-5, warmup: float = 0.1, max_length: int = 96, max_steps: Optional[int] = None,
                        device: Optional[str] = None, seed: int = 0, progress: bool = True,
                        train_layers: Optional[int] = None, lora_rank: Optional[int] = None) -> Dict[str, float]:
    """Listwise training: per group, softmax over [positive, negatives...] logits, cross-entropy on the positive.

    `train_layers=N` trains only the top N layers (and the classification head). `lora_rank=r` trains
    low-rank adapters (peft LoRA on every linear of those layers) instead of the layers' weights, and merges
    them before saving: the saved reranker is a plain Hugging Face model whose change over its start is of
    rank r per matrix, so `pipelines make-delta --rank r` ships it exactly in a few MiB."""
    import torch
    from tqdm import tqdm
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    folder = check_encoder_folder(str(model_path), "train-cross-encoder")
    if not groups:
        raise ValueError("train-cross-encoder got no training groups (no pair had a negative)")
    torch.manual_seed(seed)
    rng = random.Random(seed)
    dev = torch_device(device)
    with quiet_transformers():
        tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
        model = AutoModelForSequenceClassification.from_pretrained(str(folder), num_labels=1, local_files_only=True)
    model, trained = _reranker_trainable(model, train_layers, lora_rank)
    model.to(dev)
    order = [g for _ in range(epochs) for g in rng.sample(list(groups), len(groups))]
    steps = [order[i:i + group_batch] for i in range(0, len(order), group_batch)]
    steps, optimizer, scheduler = _optimiser(model, steps, max_steps, lr, warmup)
    model.train()
    losses_seen: List[float] = []
    for step in tqdm(steps, desc="cross-encoder", disable=not progress):
        width = min(len(texts) for _, texts in step)
        queries = [q for q, texts in step for _ in texts[:width]]
        docs = [t for _, texts in step for t in texts[:width]]
        batch = tokenizer(queries, docs, padding=True, truncation=True, max_length=max_length,
                          return_tensors="pt").to(dev)
        logits = model(**batch).logits.view(len(step), width)
        target = torch.zeros(len(step), dtype=torch.long, device=dev)
        loss = torch.nn.functional.cross_entropy(logits, target)
        losses_seen.append(_step(loss, model, optimizer, scheduler))
    if lora_rank is not None:
        model = model.merge_and_unload()  # plain weights again: W + (alpha / r) B A
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(out_dir))
    tokenizer.save_pretrained(str(out_dir))
    return {**_loss_summary(losses_seen), "trained_parameters": trained}


LORA_MODULES = ["query", "key", "value", "dense"]  # BERT / XLM-R names of every linear inside a layer


def _reranker_trainable(model, train_layers: Optional[int], lora_rank: Optional[int]):
    """Set what the reranker trains: everything (default), the top layers and the head, or LoRA adapters
    on the top layers (all layers without `train_layers`) and the head. Returns (model, trainable count)."""
    encoder = getattr(model, model.base_model_prefix, None)
    if lora_rank is None:
        if train_layers is not None:
            freeze_below_top_layers(encoder, train_layers)
            for name, param in model.named_parameters():
                if not name.startswith(model.base_model_prefix + "."):
                    param.requires_grad_(True)  # the classification head
        return model, sum(p.numel() for p in model.parameters() if p.requires_grad)
    if isinstance(lora_rank, bool) or not isinstance(lora_rank, int) or lora_rank < 1:
        raise ValueError(f"--lora-rank must be a positive integer, got {lora_rank!r}")
    n_layers = len(encoder.encoder.layer)
    if train_layers is not None and not 1 <= train_layers <= n_layers:
        raise ValueError(f"--train-layers must be an integer from 1 to {n_layers}, got {train_layers!r}")
    peft = require("peft")
    head = [name for name, child in model.named_children()
            if name != model.base_model_prefix and any(True for _ in child.parameters())]  # not the dropout
    config = peft.LoraConfig(r=lora_rank, lora_alpha=2 * lora_rank, lora_dropout=0.0, target_modules=LORA_MODULES,
                             layers_to_transform=list(range(n_layers - (train_layers or n_layers), n_layers)),
                             layers_pattern="layer", modules_to_save=head)
    model = peft.get_peft_model(model, config)
    return model, sum(p.numel() for p in model.parameters() if p.requires_grad)
