"""Pipelines: LipSyncPipeline (generation) and the generator interface it talks to."""

# Registry names (`wav2lip-gan`) download on first use under --download / TALKFACE_AUTO_DOWNLOAD=1 through the
# downloader this import registers with talkface.hub.registry.
from ..hub import download as _download  # noqa: E402,F401
