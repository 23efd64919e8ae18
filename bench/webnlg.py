"""Benchmark data: BIG-bench `gem/webnlg_en`, English text with its gold DBpedia triples.

The bigbench sdist (1.0.0, 358 MB, every task) is fetched once into `bench/.cache/`
(git-ignored) and only the task's folder is read out of it; bigbench is never installed.
The task turns triples into text (`input` "(S | p | O), ...", `target` reference texts);
read backwards it is text with gold triples, which is how `extract_bench.py` uses it.

    >>> records = webnlg_records()          # doctest: +SKIP
    >>> records[1].triples                  # doctest: +SKIP
    (('Nie_Haisheng', 'birthDate', '1964-10-13'), ('Nie_Haisheng', 'occupation', 'Fighter_pilot'))
"""

from __future__ import annotations

import json
import re
import tarfile
from dataclasses import dataclass
from pathlib import Path

from core.pypi import pypi_file

CACHE = Path(__file__).resolve().parent / ".cache"
BIGBENCH_VERSION = "1.0.0"
_BIGBENCH_SDIST = f"bigbench-{BIGBENCH_VERSION}.tar.gz"
BIGBENCH_SHA256 = "1bb398a5512c6d798cdebe0dfa0ac03f67f6033fa6b39c6ef71df978c7cbc5c2"
_BIGBENCH_TASKS = f"bigbench-{BIGBENCH_VERSION}/bigbench/benchmark_tasks/"
_TRIPLE = re.compile(r"\(([^|]*?) \| ([^|]*?) \| (.*?)\)(?=, \(|$)")

Triple = tuple[str, str, str]


@dataclass(frozen=True)
class WebNLGRecord:
    """One WebNLG item: `text` is its first reference verbalisation, `triples` the gold
    (subject, predicate, object) it verbalises, in DBpedia form (`Nie_Haisheng`,
    `birthDate`, `1964-10-13`). `index` is the position in the task file."""

    index: int
    text: str
    triples: tuple[Triple, ...]


def bigbench_task(task: str, cache: Path = CACHE) -> Path:
    """The folder of BIG-bench task `task` (e.g. `gem/webnlg_en`) under `cache/bigbench/`.

    Only that task's members are read out of the bigbench sdist (a 358 MB archive of
    every task); the package is never installed.
    """
    folder = cache / "bigbench" / task
    if (folder / "task.json").is_file():
        return folder
    prefix = f"{_BIGBENCH_TASKS}{task}/"
    sdist = pypi_file("bigbench", BIGBENCH_VERSION, _BIGBENCH_SDIST, BIGBENCH_SHA256, cache)
    found = 0
    with tarfile.open(sdist, mode="r|gz") as archive:  # one streaming pass
        for member in archive:
            if not (member.isfile() and member.name.startswith(prefix)):
                continue
            relative = Path(member.name[len(prefix):])
            if relative.is_absolute() or ".." in relative.parts:
                continue
            source = archive.extractfile(member)
            assert source is not None
            target = folder / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(source.read())
            found += 1
    if not found:
        raise FileNotFoundError(f"no task {task!r} in {sdist.name}")
    return folder


def parse_webnlg_triples(text: str) -> tuple[Triple, ...]:
    """`(A | p | B), (C | q | D)` -> ((A, p, B), (C, q, D))."""
    return tuple((s.strip(), p.strip(), o.strip()) for s, p, o in _TRIPLE.findall(text))


def webnlg_records(cache: Path = CACHE) -> list[WebNLGRecord]:
    """Every record of BIG-bench `gem/webnlg_en` (1,001, from WebNLG's test split), in order.

    Each task example is `{"input": "(S | p | O), ...", "target": [text, ...]}`: the task
    asks for text from triples; read backwards it is text with gold triples.
    """
    data = json.loads((bigbench_task("gem/webnlg_en", cache) / "task.json").read_text())
    return [
        WebNLGRecord(index=i, text=example["target"][0],
                     triples=parse_webnlg_triples(example["input"]))
        for i, example in enumerate(data["examples"])
    ]
