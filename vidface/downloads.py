"""Downloads of model files: where they go, whether they may happen, and the transfer itself.

Files go into one vidface cache folder, ``$XDG_CACHE_HOME/vidface`` (default
``~/.cache/vidface``); hub files into the Hugging Face cache (see :mod:`vidface.weights.hub`).
``VIDFACE_OFFLINE`` or ``HF_HUB_OFFLINE`` turns every download off.

A transfer writes a hidden ``.NAME.part`` file beside its target and resumes from it after an
interruption (HTTP Range), shows one progress bar (bytes, speed, ETA), is checked (its size,
and its SHA-256 where one is pinned) and only then renamed into place, so a target is
complete or absent. A file that fails its check is deleted. A server that does not answer
is asked once, with a short timeout, so an offline machine fails at once; a transfer that
breaks after the server answered is resumed, a few times, without a message each time.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from vidface.errors import WeightsError
from vidface.files import sha256_of

OFFLINE_ENV = ("VIDFACE_OFFLINE", "HF_HUB_OFFLINE")
CONNECT_TIMEOUT = 5.0  # seconds to open a connection: an offline machine fails fast
READ_TIMEOUT = 60.0  # seconds without a byte before a transfer counts as broken
TRANSFER_ATTEMPTS = 4  # a transfer that breaks after the server answered is resumed this often
CHUNK = 1 << 18  # bytes read at a time; a broken transfer loses at most this much
SPACE_MARGIN = 64 << 20  # free space kept beyond the files themselves


class Unreachable(WeightsError):
    """A server did not answer (no network, refused, timed out); nothing was written."""


def offline() -> bool:
    """Downloads are off (VIDFACE_OFFLINE or HF_HUB_OFFLINE set to a true value)."""
    return any(os.environ.get(name, "").strip().lower() not in ("", "0", "false", "no") for name in OFFLINE_ENV)


def offline_reason() -> str:
    """Which variable turned downloads off, for messages."""
    names = [name for name in OFFLINE_ENV if os.environ.get(name, "").strip().lower() not in ("", "0", "false", "no")]
    return f"{names[0]} is set" if names else "downloads are on"


def cache_root() -> Path:
    """vidface's cache folder: $XDG_CACHE_HOME/vidface, default ~/.cache/vidface."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser() / "vidface"


@dataclass(frozen=True)
class Remote:
    """One file to fetch: `url` into `target`. name: the file's path in its model folder, and
    source: who serves it, both for messages. size/sha256: pinned values (None: not known in
    advance; the size is then taken from the server)."""

    url: str
    target: Path
    name: str
    source: str
    size: int | None = None
    sha256: str | None = None

    @property
    def partial(self) -> Path:
        return self.target.with_name(f".{self.target.name}.part")


def session():
    """An HTTP session that names vidface (some hosts refuse anonymous clients)."""
    import requests

    from vidface import __version__

    client = requests.Session()
    client.headers["User-Agent"] = f"vidface/{__version__}"
    return client


def _reason(error: Exception) -> str:
    text = str(error).splitlines()[0] if str(error) else type(error).__name__
    return text[:160]


def _connection_reason(error: Exception) -> str:
    """The root cause of a failed connection, in a few words."""
    text = repr(error)
    for marker, reason in (("NameResolution", "host name not resolved"), ("Name or service not known",
                           "host name not resolved"), ("refused", "connection refused"), ("timed out", "timed out"),
                           ("Timeout", "timed out"), ("unreachable", "network unreachable")):
        if marker in text:
            return reason
    return _reason(error)


def request(client, method: str, url: str, source: str, **options):
    """One HTTP request; a connection that cannot be made raises Unreachable, at once."""
    import requests
    from urllib.parse import urlparse

    try:
        return client.request(method, url, timeout=(CONNECT_TIMEOUT, READ_TIMEOUT), **options)
    except (requests.ConnectionError, requests.Timeout) as error:
        raise Unreachable(f"cannot reach {source} at {urlparse(url).netloc}: {_connection_reason(error)}") from None
    except requests.RequestException as error:
        raise WeightsError(f"{source}: request failed ({_reason(error)})") from None


def free_space(folder: Path) -> int:
    """Free bytes on the disk that holds `folder` (or would, once created)."""
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    return shutil.disk_usage(existing).free


def check_free_space(folder: Path, needed: int) -> None:
    """WeightsError unless `folder`'s disk has `needed` bytes (and a margin) free."""
    free = free_space(folder)
    if free < needed + SPACE_MARGIN:
        raise WeightsError(f"not enough disk space in {folder}: the download needs {needed / 1e9:.2f} GB, "
                           f"{free / 1e9:.2f} GB are free; free some space or point XDG_CACHE_HOME "
                           f"(and HF_HOME) at a larger disk")


def fetch(client, item: Remote) -> Path:
    """Download `item` (resuming its .part file), check it and move it into place, with a
    progress bar for the file."""
    import requests

    item.target.parent.mkdir(parents=True, exist_ok=True)
    done = item.partial.stat().st_size if item.partial.exists() else 0
    with progress_bar(item.size, item.name, done) as advance:
        for attempt in range(TRANSFER_ATTEMPTS):
            done = item.partial.stat().st_size if item.partial.exists() else 0
            if item.size is not None and done >= item.size:
                break
            headers = {"Range": f"bytes={done}-"} if done else {}
            response = request(client, "GET", item.url, item.source, headers=headers, stream=True)
            with response:
                if response.status_code == 416 and done:  # asked past the end: the part is whole
                    break
                if response.status_code not in (200, 206):
                    raise WeightsError(f"{item.source} answered HTTP {response.status_code} for {item.url}")
                if response.status_code == 200 and done:  # the server ignored the range: start over
                    advance(-done)
                try:
                    with open(item.partial, "ab" if response.status_code == 206 else "wb") as out:
                        for chunk in response.iter_content(CHUNK):
                            out.write(chunk)
                            advance(len(chunk))
                except (requests.ConnectionError, requests.Timeout,
                        requests.exceptions.ChunkedEncodingError) as error:
                    if attempt + 1 == TRANSFER_ATTEMPTS:
                        raise WeightsError(f"downloading {item.name} from {item.source} broke off "
                                           f"({_reason(error)}); run the command again to resume") from None
                    continue
            if item.size is None or item.partial.stat().st_size >= item.size:
                break
    _check(item)
    os.replace(item.partial, item.target)
    return item.target


def _check(item: Remote) -> None:
    """Delete the .part file and raise unless its size and pinned SHA-256 match."""
    size = item.partial.stat().st_size
    problem = None
    if item.size is not None and size != item.size:
        problem = f"has {size} bytes, expected {item.size}"
    elif item.sha256 is not None and (digest := sha256_of(item.partial)) != item.sha256:
        problem = f"has SHA-256 {digest}, expected {item.sha256}"
    if problem:
        item.partial.unlink(missing_ok=True)
        raise WeightsError(f"{item.name} from {item.source} {problem}; it was deleted and not used")


@contextmanager
def progress_bar(total: int | None, description: str, initial: int = 0) -> Iterator[Callable[[int], None]]:
    """A byte progress bar on stderr (size, speed, ETA); silent when stderr is not a terminal."""
    from tqdm import tqdm

    with tqdm(total=total, initial=initial, unit="B", unit_scale=True, unit_divisor=1024, desc=description,
              leave=False, disable=None, dynamic_ncols=True) as bar:
        yield bar.update
