"""`kgrag verify` and `kgrag models train-checker` as a user runs them (in-process)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from app.cli import app
from tests.checker import tiny_checker_dir

# The tiny checker trains once per session (about a minute on two free cores; far more on
# a loaded machine), in the first test that needs it.
pytestmark = pytest.mark.timeout(1800)
runner = CliRunner()
PASSAGE = ("Marie Curie was born in Warsaw in 1867. She married Pierre Curie in 1895. "
           "She won the Nobel Prize in Physics in 1903.")
RIVER = "The Danube flows through Vienna and Budapest to the Black Sea."


def kgrag(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args))
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout


def test_jsonl_gives_one_verdict_per_line_and_a_clear_error_for_each_bad_line(
        tmp_path: Path) -> None:
    lines = [
        json.dumps({"claim": "Marie Curie was born in Warsaw.", "evidence": [RIVER, PASSAGE]}),
        json.dumps({"claim": "", "evidence": PASSAGE}),
        json.dumps({"claim": "Marie Curie was born in Warsaw.", "evidence": []}),
        json.dumps({"claim": "Marie Curie was born in Warsaw.", "evidence": "x " * 500_000}),
        '{"claim": "Marie Curie was born in Warsaw.", "evidence": ',  # cut off
        "",
        json.dumps({"claim": "The Danube flows through Vienna.", "evidence": PASSAGE}),
    ]
    path = tmp_path / "claims.jsonl"
    path.write_text("\n".join(lines) + "\n")
    code, out = kgrag("verify", "--file", str(path), "--checker", "embedding", "--json")
    data = json.loads(out)
    assert code == 1 and data["errors"] == 4 and data["checker"] == "embedding"
    results = {r["line"]: r for r in data["results"]}
    assert sorted(results) == [1, 2, 3, 4, 5, 7]  # the blank line is no claim
    assert results[1]["verdict"] == "supported" and results[1]["evidence_index"] == 1
    assert results[1]["supporting"] == [1]
    assert "claim is empty" in results[2]["error"]
    assert "evidence is empty" in results[3]["error"]
    assert "1,000,000 characters" in results[4]["error"]
    assert "not valid JSON" in results[5]["error"]
    assert results[7]["verdict"] == "unsupported" and results[7]["supporting"] == []


def test_one_claim_against_evidence_with_the_trained_checker(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KGRAG_CHECKER_PATH", str(tiny_checker_dir()))
    code, out = kgrag("verify", "Marie Curie was born in Warsaw.", "-e", RIVER, "-e", PASSAGE,
                      "--json")
    r = json.loads(out)["results"][0]
    assert code == 0 and json.loads(out)["checker"] == "trained"
    assert r["verdict"] == "supported" and r["evidence_index"] == 1
    code, out = kgrag("verify", "Marie Curie was born in Berlin.", "-e", PASSAGE)
    assert code == 0 and "unsupported" in out and "no supporting evidence" in out


def test_a_question_given_with_a_claim_is_its_context(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KGRAG_CHECKER_PATH", str(tiny_checker_dir()))
    claim = 'The answer to "Where was the admiral Marie Curie born?" is: Warsaw'
    lines = [json.dumps({"claim": claim, "evidence": PASSAGE}),
             json.dumps({"claim": claim, "evidence": PASSAGE,
                         "question": "Where was the admiral Marie Curie born?"}),
             json.dumps({"claim": claim, "evidence": PASSAGE, "question": ["not", "text"]})]
    path = tmp_path / "claims.jsonl"
    path.write_text("\n".join(lines) + "\n")
    code, out = kgrag("verify", "--file", str(path), "--json")
    results = json.loads(out)["results"]
    assert code == 1 and '"question" must be a string' in results[2]["error"]
    assert results[1]["score"] > results[0]["score"]  # "admiral" is the question's word
    code, out = kgrag("verify", claim, "-e", PASSAGE, "--question",
                      "Where was the admiral Marie Curie born?", "--json")
    assert code == 0 and json.loads(out)["results"][0]["score"] == results[1]["score"]


def test_verify_without_a_trained_checker_says_how_to_get_one(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch
                                                              ) -> None:
    monkeypatch.setenv("KGRAG_DATA_DIR", str(tmp_path))
    result = runner.invoke(app, ["verify", "A claim.", "-e", "Some evidence."])
    assert result.exit_code != 0
    assert "kgrag models train-checker" in str(result.exception) + result.output + \
        getattr(result.exception, "hint", "")


def test_train_checker_does_nothing_when_the_checker_exists(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KGRAG_CHECKER_PATH", str(tiny_checker_dir()))
    code, out = kgrag("models", "train-checker")
    assert code == 0 and "grounding checker present" in out
