"""The Models tab's downloads: every registry model with its state, size and licence, and the Download action.

A download goes through `talkface.hub.download` (the same checks, conversion and models dir as `talkface download`),
so the folder it writes is the one the demo's registry names resolve to: a generator (or scorer) downloaded here
is used by the next Generate (or Score) without restarting the page. A non-commercial licence must be ticked first.
"""

from __future__ import annotations

from ..errors import TalkFaceUserError
from ..hub import download as downloads
from ..hub import registry
from .config import ProgressCallback, no_progress


def downloadable_names() -> list[str]:
    """The names a script can download (TalkLip's Google Drive release is listed, but not offered)."""
    return [entry.name for entry in registry.REGISTRY.values() if not entry.manual_page]


def registry_rows() -> list[dict]:
    """One row per registry model: name, what it is, size, licence, state (`talkface.hub.download.list_models`)."""
    return downloads.list_models()


def registry_table() -> str:
    """The rows as a Markdown table."""
    lines = ["| name | what | size | licence | state |", "|---|---|---|---|---|"]
    for row in registry_rows():
        licence = f"[{row['license']}]({row['license_url']})" + (" (accept to download)" if row["must_accept"]
                                                                  else "")
        if row["downloaded"]:
            state = f"downloaded: `{row['path']}`"
        elif row["manual"]:
            state = "manual download (see `talkface download " + row["name"] + "`)"
        else:
            state = "not downloaded"
        lines.append(f"| {row['name']} | {row['description']} | {row['size']} | {licence} | {state} |")
    return "\n".join(lines)


def licence_text(name: str) -> str:
    """What the page says about the licence of `name` next to the tick box."""
    entry = registry.get(name)
    if entry is None:
        return ""
    licence = entry.license
    need = "accept it (tick the box) to download" if licence.must_accept else "no acceptance needed"
    return f"**{entry.name}**: {licence.name}: {licence.summary} ([terms]({licence.url})); {need}."


def download(name: str, accept_license: bool = False, progress: ProgressCallback = no_progress) -> str:
    """Download, check and convert `name` into the models dir; returns the line the page shows.

    Raises `TalkFaceUserError` (one line) when the name is unknown, its licence is not accepted, or no source gives
    a usable file (offline, for instance).
    """
    if not name:
        raise TalkFaceUserError("choose a model to download")
    entry = downloads.entry_for(name)
    if entry.license.must_accept and not accept_license:
        raise TalkFaceUserError(f"{name} is under {entry.license.name} ({entry.license.summary}); tick the box to "
                                "accept it, then Download again")
    state = {"fraction": 0.0}
    progress(0.0, f"downloading {name}")

    def on_bytes(done: int, total: int):
        state["fraction"] = min(done / total, 1.0) * 0.9 if total else 0.0  # the conversion is the last tenth
        progress(state["fraction"],
                 f"downloading {name}: {downloads.format_size(done)} of {downloads.format_size(total)}")

    folder = downloads.download(name, accept_license=accept_license, progress=on_bytes,
                                status=lambda text: progress(state["fraction"], text))
    progress(1.0, f"{name} ready")
    return f"{name} is ready in {folder}; it is used from now on, no restart needed"


__all__ = ["download", "downloadable_names", "licence_text", "registry_rows", "registry_table"]
