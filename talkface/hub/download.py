"""Download a public release by its registry name, check it, convert it, and keep the model folder.

    from talkface.hub.download import download
    folder = download("wav2lip-gan", accept_license=True)     # ~/.cache/talkface/models/wav2lip-gan

What happens, in order:
1. the licence: a non-commercial one must be accepted (`accept_license=True`, or `confirm` answers yes);
2. the original file is fetched from each source in turn until one works: `TALKFACE_DOWNLOAD_MIRROR/<name>/<file>`
   first when that variable is set, then the registry's sources. Plain URLs stream to
   `<models dir>/.incomplete/<name>/<file>.part` and resume with HTTP Range requests after a dropped connection
   (also in a later run); `hf://` sources go through huggingface_hub (its cache, resume, token, `HF_ENDPOINT`);
3. the file's size must lie in the registry's range and, where its name carries the start of its sha256
   (`vgg19-dcbb9e9d.pth`), the hash must match; the sha256 is computed either way;
4. the converter of the entry's kind turns it into a model folder, written atomically with its model card and
   `download.json` (name, source, file, size, sha256, licence) to `<models dir>/<name>`.
5. with `push_to_hub="USER/REPO"` (`--push-to-hub`), the folder is uploaded in one commit with a model card
   rendered for that repository (`hub_card`); the token and the Hub are checked before step 1, and a failed upload
   is a `PushError` that leaves the folder in place.

A failure is one `TalkFaceUserError` line, and nothing is left in the models dir except a partial download that a
network failure interrupted (the next run resumes it). The models dir is `~/.cache/talkface/models`, or
`TALKFACE_MODELS_DIR`.
"""

import hashlib
import http.client
import json
import logging
import os
import shutil
import time
import urllib.error
import urllib.request
from pathlib import Path

from ..errors import TalkFaceUserError
from . import registry

logger = logging.getLogger(__name__)

MODELS_DIR_ENV = registry.MODELS_DIR_ENV
MIRROR_ENV = "TALKFACE_DOWNLOAD_MIRROR"
DEFAULT_MODELS_DIR = registry.DEFAULT_MODELS_DIR
RECORD_FILE = "download.json"
INCOMPLETE_DIR = ".incomplete"
CHUNK_SIZE = 1 << 20
ATTEMPTS_PER_SOURCE = 5  # connections per source while each one makes progress
TIMEOUT_S = 60


class LicenseNotAcceptedError(TalkFaceUserError):
    """A non-commercial licence was not accepted."""


class DownloadError(TalkFaceUserError):
    """No source gave a usable file."""


class PushError(TalkFaceUserError):
    """The converted folder could not be uploaded to the Hub (no token, Hub unreachable, upload refused); the
    folder stays in the models dir."""


class _SourceFailed(Exception):
    """One source did not give a usable file; the next one is tried."""


models_dir = registry.models_dir
model_folder = registry.model_folder
is_downloaded = registry.is_downloaded
download_command = registry.download_command


def entry_for(name: str) -> "registry.RegistryEntry":
    entry = registry.get(name)
    if entry is None:
        raise TalkFaceUserError(f"unknown model name {name!r}; `talkface download --list` shows the names "
                                f"({', '.join(registry.NAMES)})")
    return entry


def format_size(num_bytes: int) -> str:
    if not num_bytes:
        return "?"
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if num_bytes >= scale:
            value = num_bytes / scale
            return f"{value:.0f} {unit}" if value >= 100 else f"{value:.1f} {unit}"
    return f"{num_bytes} B"


def list_models(models_dir_path=None) -> list:
    """One dict per registry entry: name, description, size, license, must_accept, downloaded, path."""
    rows = []
    for entry in registry.REGISTRY.values():
        folder = model_folder(entry.name, models_dir_path)
        downloaded = is_downloaded(entry.name, models_dir_path)
        record = read_record(folder) if downloaded else {}
        rows.append({
            "name": entry.name, "description": entry.description,
            "size": (format_size(record["size"]) if record.get("size") else
                     "~" + format_size(entry.approximate_size) if entry.approximate_size else "?"),
            "license": entry.license.name, "license_url": entry.license.url, "must_accept": entry.license.must_accept,
            "downloaded": downloaded, "path": str(folder) if downloaded else "",
            "manual": bool(entry.manual_page),
        })
    return rows


def read_record(folder) -> dict:
    path = Path(folder) / RECORD_FILE
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def source_urls(entry) -> list:
    """The mirror's URL for the entry (when `TALKFACE_DOWNLOAD_MIRROR` is set), then the registry's sources."""
    urls = []
    mirror = os.environ.get(MIRROR_ENV, "").strip()
    if mirror:
        urls.append(f"{mirror.rstrip('/')}/{entry.name}/{entry.file_name}")
    return urls + list(entry.sources)


def check_license(entry, accept_license: bool = False, confirm=None):
    """Raise unless the entry's licence needs no acceptance, was accepted, or `confirm(text)` answers True."""
    licence = entry.license
    if not licence.must_accept or accept_license:
        return
    text = f"{entry.name} is under {licence.name}: {licence.summary} ({licence.url})"
    if confirm is not None and confirm(text):
        return
    raise LicenseNotAcceptedError(f"{text}; to accept it, run: {download_command(entry.name)}")


# --- fetching ----------------------------------------------------------------------------------------------------


def _user_agent() -> str:
    from .. import __version__

    return f"talkface/{__version__}"


def _fetch_http(url: str, part: Path, progress=None) -> Path:
    """Stream `url` into `part`, resuming with Range requests; return `part` once the whole body arrived."""
    part.parent.mkdir(parents=True, exist_ok=True)
    last_error = "no answer"
    for _ in range(ATTEMPTS_PER_SOURCE):
        have = part.stat().st_size if part.exists() else 0
        request = urllib.request.Request(url, headers={"User-Agent": _user_agent()})
        if have:
            request.add_header("Range", f"bytes={have}-")
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
                length = response.headers.get("Content-Length")
                if have and response.status == 206:
                    mode, done = "ab", have
                else:  # a 200 is the whole file, whatever was there before
                    mode, done = "wb", 0
                total = done + int(length) if length and length.isdigit() else 0
                with open(part, mode) as out:
                    while True:
                        chunk = response.read(CHUNK_SIZE)
                        if not chunk:
                            break
                        out.write(chunk)
                        done += len(chunk)
                        if progress is not None:
                            progress(done, total)
            if total and done < total:
                last_error = f"connection closed at {format_size(done)} of {format_size(total)}"
                if done > have:
                    continue  # progress was made: resume
                raise _SourceFailed(f"{url}: {last_error}")
            return part
        except urllib.error.HTTPError as err:
            if err.code == 416 and have:  # the partial file is as long as (or longer than) the file: start again
                part.unlink(missing_ok=True)
                continue
            raise _SourceFailed(f"{url}: HTTP {err.code} {err.reason}") from err
        except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as err:
            reason = getattr(err, "reason", None) or err
            last_error = f"{type(err).__name__}: {reason}"
            now = part.stat().st_size if part.exists() else 0
            if now > have:
                continue
            raise _SourceFailed(f"{url}: {last_error}") from err
    raise _SourceFailed(f"{url}: {last_error} (gave up after {ATTEMPTS_PER_SOURCE} connections)")


def _hub_reachable() -> bool:
    """One quick connection to the Hub endpoint (huggingface_hub would retry an unreachable host for ~25 s)."""
    import socket
    from urllib.parse import urlsplit

    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return False
    parts = urlsplit(constants.ENDPOINT)
    try:
        socket.create_connection((parts.hostname, parts.port or (443 if parts.scheme == "https" else 80)),
                                 timeout=10).close()
        return True
    except OSError:
        return False


def _fetch_hub(source: str) -> Path:
    """Fetch `hf://OWNER/REPO/PATH` with huggingface_hub (its cache, resume, token and HF_ENDPOINT). An unreachable
    Hub (offline, HF_HUB_OFFLINE=1) still gives a file that huggingface_hub's cache holds."""
    from huggingface_hub import constants, hf_hub_download
    from huggingface_hub.utils import HfHubHTTPError

    owner, repo, filename = source[len(registry.HUB_SCHEME):].split("/", 2)
    online = _hub_reachable()
    try:
        return Path(hf_hub_download(f"{owner}/{repo}", filename, local_files_only=not online))
    except (HfHubHTTPError, OSError, ValueError) as err:  # LocalEntryNotFoundError (offline) is an OSError
        if not online:
            raise _SourceFailed(f"{source}: the Hub ({constants.ENDPOINT}) cannot be reached and the file is not "
                                "in huggingface_hub's cache") from err
        first_line = (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
        raise _SourceFailed(f"{source}: {type(err).__name__}: {first_line}") from err


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(CHUNK_SIZE), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _verify(entry, path: Path, source: str) -> tuple:
    """(size, sha256) of the fetched file, or _SourceFailed when it is not the release."""
    size = path.stat().st_size
    if entry.size_range and not entry.size_range[0] <= size <= entry.size_range[1]:
        low, high = entry.size_range
        raise _SourceFailed(f"{source}: got {format_size(size)} ({size} bytes), but {entry.file_name} is "
                            f"{format_size(low)}-{format_size(high)}: truncated or another file")
    sha256 = sha256_of(path)
    if entry.sha256_prefix and not sha256.startswith(entry.sha256_prefix):
        raise _SourceFailed(f"{source}: sha256 {sha256[:12]}... does not start with {entry.sha256_prefix} "
                            f"as {entry.file_name} says: a damaged or different file")
    return size, sha256


class _DownloadRecord:
    """Writes download.json into the model folder, alongside the converted objects (so it is atomic with them)."""

    def __init__(self, values: dict):
        self.values = values

    def save_pretrained(self, folder):
        Path(folder, RECORD_FILE).write_text(json.dumps(self.values, indent=2) + "\n")


def _remove_incomplete(root: Path, name: str):
    shutil.rmtree(root / INCOMPLETE_DIR / name, ignore_errors=True)
    try:
        (root / INCOMPLETE_DIR).rmdir()  # only when empty
    except OSError:
        pass


def download(name: str, models_dir_path=None, accept_license: bool = False, force: bool = False,
             confirm=None, progress=None, status=None, push_to_hub: str | None = None,
             private: bool = False) -> Path:
    """Download, check and convert the registry model `name`; return its model folder.

    accept_license: accept a non-commercial licence (else `confirm(text) -> bool` is asked, else the download
    stops with `LicenseNotAcceptedError`). force: download and convert again over an existing folder.
    progress(done_bytes, total_bytes): called while a plain URL streams. status(text): one line per step.
    push_to_hub: also upload the folder (with its card) to this Hub repository.
    """
    entry = entry_for(name)
    say = status or logger.info
    root = models_dir(models_dir_path)
    folder = root / name
    if push_to_hub:
        check_push(entry, push_to_hub)  # a missing token fails before a long download, not after it
    if is_downloaded(name, root) and not force:
        say(f"{name} is already downloaded at {folder} (--force downloads it again)")
        if push_to_hub:
            _push(entry, folder, push_to_hub, private, say)
        return folder
    if entry.manual_page:
        raise DownloadError(
            f"{name} cannot be downloaded by a script: get {entry.file_name} from {entry.manual_page}, then run "
            f"`talkface convert {entry.converter} --checkpoint FILE --out {folder}`")
    check_license(entry, accept_license, confirm)

    failures = []
    incomplete = root / INCOMPLETE_DIR / name
    for source in source_urls(entry):
        say(f"{name}: fetching {entry.file_name} from {source}")
        try:
            if source.startswith(registry.HUB_SCHEME):
                path = _fetch_hub(source)
            else:
                path = _fetch_http(source, incomplete / (entry.file_name + ".part"), progress)
        except _SourceFailed as err:  # a network failure: a partial file stays for the next source / run
            failures.append(str(err))
            say(f"{name}: {err}")
            continue
        try:
            size, sha256 = _verify(entry, path, source)
        except _SourceFailed as err:  # a whole but wrong file: never resumed
            failures.append(str(err))
            say(f"{name}: {err}")
            _remove_incomplete(root, name)
            continue
        say(f"{name}: {format_size(size)}, sha256 {sha256[:16]}...; converting with `talkface convert "
            f"{entry.converter}`")
        try:
            folder = _convert(entry, path, folder, source, size, sha256, force, push_to_hub)
        finally:
            _remove_incomplete(root, name)
        say(f"{name}: wrote {folder}")
        if push_to_hub:
            _push(entry, folder, push_to_hub, private, say)
        return folder

    kept = incomplete / (entry.file_name + ".part")
    if kept.exists() and kept.stat().st_size:
        note = f"; {format_size(kept.stat().st_size)} kept in {kept}, the next run resumes it"
    else:
        _remove_incomplete(root, name)
        note = ""
    raise DownloadError(f"could not download {name}: {' | '.join(failures) or 'no source'}{note}")


def _convert(entry, path: Path, folder: Path, source: str, size: int, sha256: str, force: bool,
             repo_id: str | None = None) -> Path:
    from ..models.convert_utils import save_model_folder
    from ..models.converters import converter_for

    try:
        objects = converter_for(entry.converter).convert_checkpoint(str(path), None)
    except TalkFaceUserError as err:
        raise DownloadError(f"{entry.name}: the file from {source} does not convert as {entry.file_name} "
                            f"(`talkface convert {entry.converter}`), nothing was kept: {err}") from err
    record = _DownloadRecord({
        "name": entry.name, "file_name": entry.file_name, "source": source, "size": size, "sha256": sha256,
        "license": entry.license.name, "license_url": entry.license.url, "converter": entry.converter,
        "downloaded_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    })
    # the card names the release file (the card shows a file name only); the source URL is in download.json
    return save_model_folder([*objects, record], folder, kind=entry.converter, overwrite=force,
                             card_info={"source_checkpoint": entry.file_name,
                                        **({"repo_id": repo_id} if repo_id else {})})


# --- publishing ---------------------------------------------------------------------------------------------------


def _push_kept(folder: Path) -> str:
    return f"the model folder stays at {folder}; run the same command again to retry the upload"


def check_push(entry, repo_id: str, note: str = "nothing was downloaded or uploaded"):
    """What an upload needs, checked before anything is fetched: a valid repository id, a Hugging Face token
    (`hf auth login` or HF_TOKEN) and a reachable Hub endpoint. `note` ends the error line."""
    import huggingface_hub
    from huggingface_hub import constants
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(repo_id)
        if "/" not in repo_id:
            raise HFValidationError("it must be USER/REPO or ORG/REPO")
    except HFValidationError as err:
        raise PushError(f"--push-to-hub {repo_id!r} is not a Hub repository id ({str(err).splitlines()[0]})") from err
    if not huggingface_hub.get_token():
        raise PushError(f"cannot push {entry.name} to {repo_id}: no Hugging Face token; log in with `hf auth login` "
                        f"or set HF_TOKEN ({note})")
    if not _hub_reachable():
        raise PushError(f"cannot push {entry.name} to {repo_id}: the Hub ({constants.ENDPOINT}) cannot be reached "
                        f"({note})")


def _folder_model(folder: Path):
    """The model saved in `folder`, as the class its config.json names (the card states its class and size)."""
    from ..models import MODEL_CLASSES
    from ..models.avhubert import AVHubertForLipReading

    config = json.loads((folder / "config.json").read_text())
    classes = {cls.__name__: cls for _, cls in MODEL_CLASSES.values()}
    classes[AVHubertForLipReading.__name__] = AVHubertForLipReading
    architectures = config.get("architectures") or []
    model_class = classes.get(architectures[0]) if architectures else None
    return (model_class or MODEL_CLASSES[config["model_type"]][1]).from_pretrained(folder)


def hub_card(entry, folder: Path, repo_id: str) -> str:
    """The model card a pushed folder gets: rendered again for `repo_id` (its loading lines name the Hub id, even
    when the folder was downloaded without --push-to-hub), from the folder's own files and model."""
    from .cards import render_model_card

    return render_model_card(entry.converter, model=_folder_model(folder), folder=folder, repo_id=repo_id,
                             source_checkpoint=entry.file_name)


def _is_hub_failure(err: Exception) -> bool:
    """An error of the upload itself (HTTP status, connection, token, file), not a bug in talkface."""
    from huggingface_hub.errors import HfHubHTTPError

    root_module = type(err).__module__.split(".")[0]
    return isinstance(err, (HfHubHTTPError, OSError)) or root_module in ("httpx", "httpx2", "requests", "urllib3")


def _push(entry, folder: Path, repo_id: str, private: bool, say):
    """Upload every file of the model folder and its card for `repo_id` in one commit (the local folder is not
    changed). A failure is one `PushError` line; the folder stays."""
    from huggingface_hub import CommitOperationAdd, HfApi

    check_push(entry, repo_id, note=_push_kept(folder))
    card = hub_card(entry, folder, repo_id)
    operations = [CommitOperationAdd(path_in_repo=path.relative_to(folder).as_posix(), path_or_fileobj=str(path))
                  for path in sorted(folder.rglob("*")) if path.is_file() and path.relative_to(folder).as_posix()
                  != "README.md"]
    operations.append(CommitOperationAdd(path_in_repo="README.md", path_or_fileobj=card.encode("utf-8")))
    say(f"{entry.name}: uploading {len(operations)} files to {repo_id}")
    try:
        api = HfApi()
        url = api.create_repo(repo_id, private=private, exist_ok=True)
        api.create_commit(getattr(url, "repo_id", None) or repo_id, operations,
                          commit_message=f"Upload {entry.name} ({entry.file_name}, converted with talkface)")
    except Exception as err:
        if not _is_hub_failure(err):
            raise
        reason = (str(err).strip().splitlines() or [""])[0][:200]
        raise PushError(f"could not push {entry.name} to {repo_id} ({type(err).__name__}: {reason}); "
                        f"{_push_kept(folder)}") from err
    say(f"pushed {folder} to https://huggingface.co/{repo_id}")


def terminal_confirm(text: str) -> bool:
    """Ask on a terminal whether a licence is accepted (False without a terminal)."""
    import sys

    if not (sys.stdin.isatty() and sys.stderr.isatty()):
        return False
    print(text, file=sys.stderr)
    try:
        answer = input("Accept this licence? [y/N] ")
    except EOFError:
        return False
    return answer.strip().lower() in ("y", "yes")


def download_on_first_use(name: str) -> Path:
    """The downloader of `registry.resolve_name` under `--download` / TALKFACE_AUTO_DOWNLOAD=1: a non-commercial
    licence is asked on a terminal, and refused (one line saying how to accept it) elsewhere."""
    import sys

    return download(name, confirm=terminal_confirm, status=lambda text: print(text, file=sys.stderr))


registry.register_downloader(download_on_first_use)

__all__ = [
    "DEFAULT_MODELS_DIR", "MIRROR_ENV", "MODELS_DIR_ENV", "RECORD_FILE", "DownloadError", "LicenseNotAcceptedError",
    "PushError", "check_license", "check_push", "hub_card", "download", "download_command", "download_on_first_use",
    "terminal_confirm", "entry_for", "format_size", "is_downloaded", "list_models",
    "model_folder", "models_dir", "read_record", "sha256_of", "source_urls",
]
