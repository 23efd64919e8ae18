"""The trained grounding checker: a cross-encoder that reads a claim and a piece of evidence
together and gives the probability that the evidence supports the claim (MiniCheck's small
checker; here MiniLM-L6 fine-tuned by `kgrag models train-checker`).

The model directory is a plain Hugging Face sequence-classification model (one logit) with
its tokenizer and `checker.json`: how it was trained, on what, and the decision threshold
chosen on held-out training data. Scores are shifted so that this threshold is 0.5: a
score of 0.5 or more means "supported" for every checker kgrag has.

The cross-encoder's logit is combined with two lexical features of the pair, the count and
the share of the claim's content words that the evidence (or the question the claim
answers) never mentions (`retrieval.lexical.novel_terms`): a logistic regression fitted on
the same held-out training pairs (`calibration` in `checker.json`), each weight held to its
sense (a feature whose fitted weight comes out with the wrong sign is left out). The
lexical features carry most of it: trained for minutes on a CPU, the cross-encoder learns
the style of HaluEval dialogue hallucinations but not an entity swapped within the passage
(held-out AUROC on those 0.53), and on short claims its logit barely moves (bench/README.md,
"Grounding checkers"). A pairwise ranking term (`TrainConfig.pair_loss`) does teach it the
swaps (held-out 0.88), but that checker scores 0.56 on HaluEval QA, so it is not the default.

    >>> checker = CrossEncoderGroundingChecker.load(settings)              # doctest: +SKIP
    >>> checker.scores("Marie Curie was born in Warsaw.",
    ...                ["Marie Curie was born in Warsaw in 1867."])         # doctest: +SKIP
    [0.97]
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from core.errors import ModelNotFoundError
from core.llm.base import ChatModel
from core.model_files import model_file
from core.protocols import Embedder
from core.settings import Settings

if TYPE_CHECKING:
    from retrieval.verify import GroundingChecker

log = logging.getLogger(__name__)

CHECKER_DIR = "grounding-checker"
INFO_FILE = "checker.json"
TRAIN_HINT = "run: kgrag models train-checker (about 6 minutes on 2 free CPU cores; make setup " \
             "runs it once)"


def checker_path(settings: Settings) -> Path:
    """Where the trained checker lives: `checker_path` when set, else the models dir."""
    return settings.checker_path or model_file(settings, CHECKER_DIR)


@dataclass
class CheckerInfo:
    """`checker.json`: what a trained checker is and how it was made."""

    base_model: str
    max_length: int
    threshold_logit: float  # the raw logit chosen as the decision threshold
    threshold_rule: str = ""
    # {"features": [...], "weights": [...], "bias": b}: the logit the threshold applies to
    # is bias + weights . features (FEATURES); empty: the cross-encoder's logit alone.
    calibration: dict[str, Any] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)  # sources, sizes, seconds, ...
    validation: dict[str, Any] = field(default_factory=dict)  # auroc, balanced accuracy

    def save(self, directory: Path) -> None:
        (directory / INFO_FILE).write_text(json.dumps(asdict(self), indent=2) + "\n")

    @classmethod
    def read(cls, directory: Path) -> CheckerInfo:
        data = json.loads((directory / INFO_FILE).read_text())
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


#: The calibration's inputs, in order: the cross-encoder logit, then lexical features.
FEATURES = ("logit", "novel_terms", "novel_share")
#: The sign each feature's weight must have: a higher cross-encoder logit never makes a
#: claim less supported, and words the evidence never mentions never make it more.
FEATURE_SIGNS = (1, -1, -1)
#: Novel terms past this many add nothing (a long claim is not less supported per word).
MAX_NOVEL = 6


def lexical_features(claims: Sequence[str], texts: Sequence[str],
                     contexts: Sequence[str] | None = None) -> np.ndarray:
    """(n, 2): novel content terms of each claim (capped at MAX_NOVEL) and their share of
    the claim's content terms, against its text and context."""
    from retrieval.lexical import novel_terms

    rows = []
    for i, (claim, text) in enumerate(zip(claims, texts, strict=True)):
        novel, total = novel_terms(claim, text, contexts[i] if contexts else "")
        rows.append((min(novel, MAX_NOVEL), novel / total if total else 0.0))
    return np.asarray(rows, dtype=np.float64).reshape(len(rows), 2)


def calibrated(logits: np.ndarray, lexical: np.ndarray, calibration: dict[str, Any]
               ) -> np.ndarray:
    """The combined logit (the cross-encoder's alone without a calibration)."""
    if not calibration:
        return logits.astype(np.float64)
    x = np.column_stack([logits.astype(np.float64), lexical])
    return np.asarray(x @ np.asarray(calibration["weights"], dtype=np.float64)
                      + float(calibration["bias"]))


class CrossEncoderGroundingChecker:
    """`GroundingChecker` over a trained cross-encoder: every piece is scored (batched), so
    the verifier can cite each piece that supports a claim, not only the best."""

    name = "trained"
    exhaustive = True  # cheap enough to score every source in the context

    def __init__(self, path: Path, *, device: str = "cpu", batch_size: int = 16) -> None:
        self.path = Path(path)
        if not (self.path / INFO_FILE).is_file():
            raise ModelNotFoundError(f"no trained grounding checker at {self.path}",
                                     hint=TRAIN_HINT)
        self.info = CheckerInfo.read(self.path)
        weights = self.info.calibration.get("weights") or []
        if any(w * sign < 0 for w, sign in zip(weights, FEATURE_SIGNS, strict=False)):
            log.warning("the grounding checker at %s was calibrated before weights were held "
                        "to their sense (new words can raise its scores); run: kgrag models "
                        "train-checker --recalibrate (about a minute)", self.path)
        self.device = device
        self.batch_size = batch_size
        self._model: Any = None
        self._tokenizer: Any = None
        self._lock = threading.Lock()

    @classmethod
    def load(cls, settings: Settings) -> CrossEncoderGroundingChecker:
        from core.embed import resolve_device

        return cls(checker_path(settings), device=resolve_device(settings.embed_device))

    @property
    def piece_words(self) -> int:
        """Evidence words per piece so that claim + piece fit the model (~1.3 tokens a word,
        room for a two-sentence claim)."""
        return max(32, int((self.info.max_length - 64) / 1.3))

    @property
    def threshold(self) -> float:
        return 0.5

    def _loaded(self) -> tuple[Any, Any]:
        with self._lock:
            if self._model is None:
                from transformers import AutoModelForSequenceClassification, AutoTokenizer

                self._tokenizer = AutoTokenizer.from_pretrained(str(self.path))
                model = AutoModelForSequenceClassification.from_pretrained(str(self.path))
                self._model = model.to(self.device).eval()
            return self._model, self._tokenizer

    def logits(self, claims: Sequence[str], texts: Sequence[str]) -> np.ndarray:
        """Raw logits of (claim, evidence) pairs, batched; the evidence is what truncation
        cuts when a pair is longer than the model."""
        import torch

        model, tokenizer = self._loaded()
        out: list[np.ndarray] = []
        # Similar lengths batched together pad less.
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]) + len(claims[i]))
        with torch.inference_mode():
            for start in range(0, len(order), self.batch_size):
                idx = order[start:start + self.batch_size]
                enc = tokenizer([claims[i] for i in idx], [texts[i] for i in idx],
                                truncation="only_second", max_length=self.info.max_length,
                                padding=True, return_tensors="pt").to(self.device)
                out.append(model(**enc).logits[:, 0].float().cpu().numpy())
        flat = np.concatenate(out) if out else np.zeros(0, dtype=np.float32)
        result = np.empty_like(flat)
        result[order] = flat
        return result

    def combined_logits(self, claims: Sequence[str], texts: Sequence[str],
                        contexts: Sequence[str] | None = None) -> np.ndarray:
        """The cross-encoder's logits combined with the lexical features (`calibration`)."""
        logits = self.logits(claims, texts)
        if not self.info.calibration:
            return logits.astype(np.float64)
        return calibrated(logits, lexical_features(claims, texts, contexts),
                          self.info.calibration)

    def probabilities(self, claims: Sequence[str], texts: Sequence[str],
                      contexts: Sequence[str] | None = None) -> np.ndarray:
        """Support scores: 0.5 at the threshold chosen on held-out training data."""
        return sigmoid(self.combined_logits(claims, texts, contexts)
                       - self.info.threshold_logit)

    def scores(self, claim: str, texts: Sequence[str], context: str = ""
               ) -> list[float | None]:
        """`context`: text the claim may take words from without them counting as new
        (the question an answer sentence answers)."""
        if not texts:
            return []
        return [float(p) for p in self.probabilities([claim] * len(texts), texts,
                                                     [context] * len(texts))]


def make_checker(settings: Settings, embedder: Embedder, llm: ChatModel
                 ) -> GroundingChecker | None:
    """The grounding checker `settings.grounding` names (None for `off`). Without a trained
    checker on disk, `trained` falls back to the embedding checker with a warning: the
    verdicts then say `method: embedding`."""
    from retrieval.verify import EmbeddingGroundingChecker, LLMGroundingChecker

    if settings.grounding == "llm":
        return LLMGroundingChecker(llm)
    if settings.grounding == "embedding":
        return EmbeddingGroundingChecker(embedder)
    if settings.grounding == "trained":
        try:
            return CrossEncoderGroundingChecker.load(settings)
        except ModelNotFoundError as exc:
            log.warning("%s; using the embedding checker meanwhile (%s)", exc, exc.hint)
            return EmbeddingGroundingChecker(embedder)
    return None
