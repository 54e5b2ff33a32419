"""Files of a public Google Drive folder, over plain HTTP.

Drive has no API for anonymous clients; these are the two pages a browser uses (and gdown reads):
``embeddedfolderview?id=FOLDER`` lists a folder (each file is a link to
``https://drive.google.com/file/d/FILE_ID/view`` named after the file), and
``uc?id=FILE_ID&export=download&confirm=t`` serves a file, or, for large files, a page whose
``download-form`` (action and hidden inputs) makes the request that does. The endpoint is
VIDFACE_DRIVE_ENDPOINT when set, so a mirror (or a test server) can stand in for Google.
vidface speaks HTTP here itself rather than through gdown, whose Google hosts are fixed: this
way Drive files get the same resumable, checked and quiet transfer as every other source.
"""

from __future__ import annotations

import html
import re
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urlencode, urljoin

from vidface.downloads import Remote, request
from vidface.errors import WeightsError
from vidface.weights.sources import DriveFolder, PinnedFile

_FILE_LINK = re.compile(r'<a\b[^>]*\bhref="https://drive\.google\.com/file/d/([-\w]{10,})/view[^"]*"[^>]*>(.*?)</a>',
                        re.S | re.I)
_TAG = re.compile(r"<[^>]+>")


def listing(client, folder: DriveFolder) -> dict[str, str]:
    """File name -> file id, for the files directly in `folder`."""
    response = request(client, "GET", folder.listing, folder.name)
    if response.status_code != 200:
        raise WeightsError(f"{folder.name} cannot be listed (HTTP {response.status_code}); open {folder.page} "
                           f"in a browser and download the files by hand")
    return {html.unescape(_TAG.sub("", name)).strip(): file_id for file_id, name in _FILE_LINK.findall(response.text)}


def remotes(client, folder: DriveFolder, files: tuple[PinnedFile, ...], into: Path) -> list[Remote]:
    """The downloads of `files` from `folder` into folder `into`, with the sizes Drive reports."""
    ids = listing(client, folder)
    absent = [f.path for f in files if f.path not in ids]
    if absent:
        raise WeightsError(f"{folder.name} ({folder.page}) has no {', '.join(absent)}")
    return [_remote(client, folder, file, ids[file.path], into) for file in files]


def _remote(client, folder: DriveFolder, file: PinnedFile, file_id: str, into: Path) -> Remote:
    """Follow Drive's confirmation page, if any, to the URL that serves the file itself."""
    url = folder.download(file_id)
    for _ in range(3):
        response = request(client, "GET", url, folder.name, stream=True)
        with response:
            if response.status_code != 200:
                raise WeightsError(f"{folder.name} answered HTTP {response.status_code} for {file.path}")
            if not response.headers.get("Content-Type", "").startswith("text/html"):
                length = response.headers.get("Content-Length")
                size = file.size if file.size is not None else (int(length) if length else None)
                return Remote(response.url, into / file.path, file.path, folder.name, size, file.sha256)
            form = _download_form(response.text)
        if form is None:
            raise WeightsError(f"{folder.name} does not serve {file.path} (quota exceeded or access changed?); "
                               f"download it by hand from {folder.page}")
        url = urljoin(response.url, form)
    raise WeightsError(f"{folder.name} kept asking to confirm the download of {file.path}")


class _FormReader(HTMLParser):
    """The action and hidden inputs of the form with id download-form."""

    def __init__(self) -> None:
        super().__init__()
        self.action: str | None = None
        self.fields: dict[str, str] = {}
        self._inside = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {k: v or "" for k, v in attrs}
        if tag == "form" and values.get("id") == "download-form":
            self.action, self._inside = values.get("action"), True
        elif tag == "input" and self._inside and values.get("type") == "hidden" and values.get("name"):
            self.fields[values["name"]] = values.get("value", "")

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self._inside = False


def _download_form(page: str) -> str | None:
    reader = _FormReader()
    reader.feed(page)
    if not reader.action:
        return None
    return reader.action + ("&" if "?" in reader.action else "?") + urlencode(reader.fields)
