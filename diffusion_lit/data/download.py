"""Downloads that fail fast and explain themselves on offline machines.

torchvision's downloaders retry mirrors and, without a socket timeout, can wait for minutes on
a network that silently drops packets. Everything here runs under a bounded socket timeout
and turns any failure into a one-line reason that the data modules put into a UserError
saying which files to place where.
"""

from __future__ import annotations

import contextlib
import io
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlparse

from torchvision.datasets.utils import download_url, extract_archive

from diffusion_lit.utils.errors import UserError
from diffusion_lit.utils.files import file_sha256

# Seconds a single socket operation may block before a download counts as failed.
DOWNLOAD_TIMEOUT_S = 60.0


@contextlib.contextmanager
def socket_timeout(seconds: float) -> Iterator[None]:
    """Bound every blocking socket call made inside the block (urllib has no other hook)."""
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(previous)


def attempt_download(fetch: Callable[[], object], timeout_s: float = DOWNLOAD_TIMEOUT_S) -> str | None:
    """Run ``fetch`` (e.g. a torchvision dataset constructor with ``download=True``) under a
    socket timeout, with its progress chatter captured.

    Returns:
        None on success, else a short reason (the exception's message, last line only).
    """
    chatter = io.StringIO()
    try:
        with socket_timeout(timeout_s), contextlib.redirect_stdout(chatter):
            fetch()
    except Exception as err:  # network, HTTP, checksum or archive errors alike
        lines = [line for line in str(err).strip().splitlines() if line.strip()]
        if not lines:
            lines = [line for line in chatter.getvalue().splitlines() if "error" in line.lower()] or [
                type(err).__name__
            ]
        return lines[-1].strip()
    return None


def fetch_if_missing(missing: Callable[[], list[str]], download: bool, fetch: Callable[[], object]) -> str | None:
    """Make a dataset's files present: None if ``missing()`` is empty (at once, or after
    ``fetch`` when ``download`` allows it), else the reason they are still missing."""
    if not missing():
        return None
    if not download:
        return "data.download=false"
    reason = attempt_download(fetch)
    if reason is None and missing():
        reason = "the download did not produce the expected files"
    return reason


def download_and_extract(url: str, download_dir: Path, extract_dir: Path, sha256: str | None = None) -> None:
    """Download an archive (zip, tar, tar.gz, ...) once, check its SHA-256, unpack it.

    The archive is kept in ``download_dir``: a second call (or a rerun after an interrupted
    extraction) reuses it when its checksum matches instead of downloading again.

    Raises:
        UserError: the download failed (with the URL and the reason), or the file does not
            match ``sha256`` (the bad file is removed so the next run downloads it afresh).
    """
    filename = Path(urlparse(url).path).name or "archive"
    archive = download_dir / filename
    if not (archive.exists() and (sha256 is None or file_sha256(archive) == sha256.lower())):
        download_dir.mkdir(parents=True, exist_ok=True)
        reason = attempt_download(lambda: download_url(url, str(download_dir), filename))
        if reason is not None:
            raise UserError(
                f"could not download {url} ({reason}). Download it on a machine with network access and "
                f"put it at {archive}, or unpack it into {extract_dir} yourself."
            )
        if sha256 is not None:
            actual = file_sha256(archive)
            if actual != sha256.lower():
                archive.unlink()
                raise UserError(
                    f"{url} downloaded with SHA-256 {actual}, but data.sha256 is {sha256}: the file is corrupt or "
                    "not the expected archive (it was deleted; check the URL and checksum)."
                )
    try:
        extract_archive(str(archive), str(extract_dir))
    except Exception as err:
        raise UserError(f"could not unpack {archive} into {extract_dir} ({err}); is it a zip or tar archive?") from None
