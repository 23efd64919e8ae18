"""A tiny grounding checker, trained once per test session on pairs made here.

Real training data (HaluEval dialogue, VitaminC) would mean a download; these templated
biographies teach the same skill at toy scale: a claim is supported when the evidence
states its facts, and not when a name, place, year or job differs. Trained from the
shipped MiniLM weights with the real training loop (60 steps: about a minute on two
cores).
"""

from __future__ import annotations

import random
import tempfile
from functools import lru_cache
from pathlib import Path

from retrieval.checker_data import ClaimPair, TrainingData
from retrieval.checker_train import TrainConfig, train_checker

PEOPLE = ["Ada Lovelace", "Alan Turing", "Grace Hopper", "Niels Bohr", "Lise Meitner",
          "Emmy Noether", "Carl Gauss", "Rosalind Franklin", "Max Planck", "Dorothy Hodgkin",
          "Enrico Fermi", "Hedy Lamarr", "Srinivasa Ramanujan", "Chien-Shiung Wu"]
CITIES = ["London", "Paris", "Vienna", "Berlin", "Rome", "Madrid", "Oslo", "Prague",
          "Lisbon", "Dublin", "Athens", "Warsaw", "Copenhagen", "Budapest"]
JOBS = ["chemist", "painter", "physicist", "engineer", "composer", "surgeon", "architect",
        "mathematician", "astronomer", "novelist"]


def synthetic_pairs(n: int, seed: int) -> list[ClaimPair]:
    rng = random.Random(seed)
    pairs: list[ClaimPair] = []
    while len(pairs) < n:
        p, city, job = rng.choice(PEOPLE), rng.choice(CITIES), rng.choice(JOBS)
        year = rng.randint(1800, 1990)
        evidence = (f"{p} was born in {city} in {year}. {p} worked as a {job} for many "
                    f"years.")
        other_city = rng.choice([c for c in CITIES if c != city])
        other_job = rng.choice([j for j in JOBS if j != job])
        other_year = year + rng.choice([-7, -3, 4, 11])
        good = [f"{p} was born in {city}.", f"{p} worked as a {job}.",
                f"{p} was born in {year}."]
        bad = [f"{p} was born in {other_city}.", f"{p} worked as a {other_job}.",
               f"{p} was born in {other_year}."]
        k = rng.randrange(3)
        pairs += [ClaimPair(good[k], evidence, 1, "synthetic"),
                  ClaimPair(bad[k], evidence, 0, "synthetic")]
    return pairs[:n]


@lru_cache(maxsize=1)
def tiny_checker_dir() -> Path:
    """The trained checker's directory (trained on first use, then reused)."""
    out = Path(tempfile.mkdtemp(prefix="kgrag-tiny-checker-")) / "grounding-checker"
    data = TrainingData(train=synthetic_pairs(320, seed=1), validation=synthetic_pairs(64, 2))
    config = TrainConfig(sizes={}, epochs=3, batch_size=16, learning_rate=2e-4,
                         max_length=64, checkpoint_steps=1000)
    train_checker(out, out.parent / "cache", config, data=data)
    return out
