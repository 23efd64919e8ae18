"""Files from the configured Python package index, fetched once and checked by sha256.

Plain `pip download` cannot fetch every sdist: for bigbench 1.0.0 pip prepares the sdist's
metadata, meets a direct-URL dependency (bleurt) and refuses it before saving the archive
("Distributions from PyPI cannot declare direct URL dependencies"). So this asks pip's own
package finder (the same index settings, certificates and proxies as `pip install`) for the
file's link and streams it through pip's session, checking the pinned sha256. Nothing is
built or installed.

    >>> pypi_file("bigbench", "1.0.0", "bigbench-1.0.0.tar.gz", SHA, cache)  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

from core.errors import KgragError


def pypi_file(package: str, version: str, filename: str, sha256: str, cache: Path) -> Path:
    """`cache/filename`, a file of `package==version` on the index, downloaded once.

    Raises KgragError when the index has no such file, cannot be reached, or serves a file
    whose sha256 is not `sha256`; a cut-off download leaves only a temporary file behind.
    """
    path = cache / filename
    if path.is_file():
        return path
    from pip._internal.commands import create_command  # pip's client, not a private index

    command: Any = create_command("download")
    options, _ = command.parse_args(["--no-deps", "--quiet", f"{package}=={version}"])
    tmp = path.with_name(f".{filename}.tmp-{os.getpid()}")
    digest = hashlib.sha256()
    try:
        with command.main_context():
            session = command.get_default_session(options)
            finder = command._build_package_finder(options=options, session=session)
            links = [c.link for c in finder.find_all_candidates(package)
                     if c.link.filename == filename]
            if not links:
                raise KgragError(f"the package index has no {filename}",
                                 hint=f"check that {package}=={version} is served by the "
                                 "index pip is configured for (pip config list)")
            cache.mkdir(parents=True, exist_ok=True)
            with session.get(links[0].url_without_fragment, stream=True) as response, \
                    tmp.open("wb") as out:
                response.raise_for_status()
                for block in response.iter_content(1 << 20):
                    digest.update(block)
                    out.write(block)
    except KgragError:
        raise
    except Exception as exc:  # network, proxy, HTTP errors: say what and how to fix
        tmp.unlink(missing_ok=True)
        raise KgragError(f"could not download {filename} from the package index: {exc}",
                         hint="check access to the package index (pip config, proxy), "
                         "then run the command again; it resumes from the cache") from exc
    if digest.hexdigest() != sha256:
        tmp.unlink()
        raise KgragError(f"{filename}: sha256 {digest.hexdigest()} is not the pinned {sha256}",
                         hint="the index serves a different file under this name; "
                         "do not use it")
    os.replace(tmp, path)
    return path
