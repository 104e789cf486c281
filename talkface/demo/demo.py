"""What the web demo (`app.py`) does, without the page: configuration, lazily loaded models, upload checks and the
two actions (generate a lip-synced video; score videos).

`app.py` builds the Gradio page and turns the `TalkFaceUserError`s raised here into `gr.Error` messages, so this
package does not import gradio and can be tested on its own:

    from talkface.demo import DemoConfig, TalkFaceDemo
    demo = TalkFaceDemo(DemoConfig(generators={"wav2lip": "models/wav2lip"}, syncnet="models/syncnet-lse"))
    result = demo.generate(face_video="face.mp4", audio="speech.wav")
    result.video, result.score_rows

Models (generators, SyncNet for LSE, AV-HuBERT for AVS, GFPGAN for enhancement) are folders made by `talkface
convert` or Hub ids. Each is loaded the first time it is needed, once per process (thread-safe), and kept. A model
that is not configured or not found is reported with the command that provides it; everything that does not need
it keeps working. Scoring runs `talkface.evaluation`'s loop with these models, so the page's numbers are those of
`talkface evaluate`.

Files: every request works in its own temporary folder, deleted when it ends (also on errors). What the page shows
(videos, tables to download, plots) is moved to `cache_dir/outputs/<request>/`; request folders older than
`cache_max_age` seconds are deleted at the start of each request.

The parts: `config.py` (settings, tiny random models), `models.py` (model cache, status, the scoring context),
`uploads.py` (upload checks), `generate.py` (the Generate tab), `score.py` (the Score tab and the result's scores).
"""

from __future__ import annotations

import shutil
import time
import uuid
from pathlib import Path

from ..errors import ModelLoadError, TalkFaceUserError
from ..metrics import get_metric
from ..metrics.lse import S3FD_HINT
from ..pipelines.lipsync.watermark import Watermarker
from . import uploads
from .config import (  # noqa: F401  (re-exported: these names lived here first)
    DEFAULT_CACHE_MAX_AGE,
    DEFAULT_MAX_FILE_SIZE,
    DEFAULT_MAX_FILES,
    DEFAULT_MAX_SECONDS,
    DEFAULT_MODEL_FOLDERS,
    DEFAULT_SCORE_METRICS,
    GENERATOR_HINT,
    GFPGAN_HINT,
    TINY_RANDOM_LABEL,
    DemoConfig,
    ProgressCallback,
    check_ffmpeg,
    config_from_args,
    create_tiny_random_models,
    parse_generator_specs,
)
from .generate import GenerateResult
from .generate import generate as _generate
from .models import LazyModelCache, ModelStatus, missing_reason
from .score import ScoreResult
from .score import score as _score
from .score import score_generated as _score_generated


class TalkFaceDemo:
    """The actions behind the page; one instance per process, shared by all requests."""

    def __init__(self, config: DemoConfig | None = None):
        self.config = config or DemoConfig()
        self.models = LazyModelCache()
        #: every generated video carries talkface's invisible mark (the pipeline adds the metadata tags)
        self.watermarker = Watermarker()
        self.outputs_dir = self.config.cache_dir / "outputs"
        self.outputs_dir.mkdir(parents=True, exist_ok=True)
        self.prune_outputs()

    # -- the actions (each in its own module) ---------------------------------------------------------------------
    generate = _generate
    score = _score
    score_generated = _score_generated

    # -- model status and loading ---------------------------------------------------------------------------------
    def model_status(self) -> list[ModelStatus]:
        config = self.config
        rows = [ModelStatus("generator", name, source, missing_reason(source, GENERATOR_HINT))
                for name, source in config.generators.items()]
        if not config.generators:
            rows.append(ModelStatus("generator", "-", None, f"not configured; {GENERATOR_HINT}"))
        lse, avs = get_metric("lse"), get_metric("avs")
        rows += [
            ModelStatus("lip-sync scorer (LSE)", "SyncNet", config.syncnet,
                        missing_reason(config.syncnet, lse.model_hint)),
            ModelStatus("lip-sync scorer (AVS)", "AV-HuBERT", config.avhubert,
                        missing_reason(config.avhubert, avs.model_hint)),
            ModelStatus("face enhancer", "GFPGAN", config.gfpgan, missing_reason(config.gfpgan, GFPGAN_HINT)),
            ModelStatus("face detector (LSE, syncnet_python protocol)", "S3FD", config.s3fd,
                        missing_reason(config.s3fd, S3FD_HINT)),
        ]
        return rows

    @property
    def enhancer_missing(self) -> str | None:
        return missing_reason(self.config.gfpgan, GFPGAN_HINT)

    def device(self):
        from ..utils.devices import resolve_device

        return resolve_device(self.config.device)

    def pipeline(self, name: str, enhance: bool = False):
        """A `LipSyncPipeline` for this request around the cached generator (its own face backend and hooks)."""
        from ..pipelines.lipsync.pipeline import LipSyncPipeline

        source = self.config.generators.get(name)
        if source is None:
            if not self.config.generators:
                raise ModelLoadError(f"no generator model is configured; {GENERATOR_HINT}")
            raise TalkFaceUserError(f"unknown generator {name!r}; choose one of: {', '.join(self.config.generators)}")
        missing = missing_reason(source, GENERATOR_HINT)
        if missing:
            raise ModelLoadError(f"generator {name}: {missing}")
        try:
            cached = self.models.get(f"generator:{source}",
                                     lambda: LipSyncPipeline.from_pretrained(source, device=self.device(),
                                                                             model_name=name))
        except ModelLoadError as err:
            if "--checkpoint" in str(err):  # already names the exact command
                raise
            raise ModelLoadError(f"generator {name}: {err}; {GENERATOR_HINT}") from err
        enhancer = self.enhancer() if enhance else None
        return LipSyncPipeline(cached.generator, face_backend=self.config.face_backend, enhancer=enhancer,
                               watermarker=self.watermarker, model_name=cached.model_name)

    def enhancer(self):
        missing = self.enhancer_missing
        if missing:
            raise ModelLoadError(f"face enhancement needs GFPGAN, which is {missing}")
        from ..pipelines.lipsync.enhancer import load_enhancer

        source = self.config.gfpgan
        return self.models.get(f"gfpgan:{source}", lambda: load_enhancer("gfpgan", source, device=self.device()))

    # -- files ----------------------------------------------------------------------------------------------------
    def prune_outputs(self):
        """Delete output folders older than `cache_max_age` seconds."""
        limit = time.time() - self.config.cache_max_age
        for entry in self.outputs_dir.iterdir():
            try:
                if entry.stat().st_mtime < limit:
                    shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
            except OSError:  # another request pruned it first
                pass

    def new_output_dir(self) -> Path:
        folder = self.outputs_dir / f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:8]}"
        folder.mkdir(parents=True)
        return folder

    # -- upload checks (talkface.demo.uploads) --------------------------------------------------------------------
    def check_face(self, path):
        """Probe the face upload: a readable video (not too long) or photo. Returns its MediaInfo."""
        return uploads.check_face(self.config, path)

    def check_audio(self, path, role="audio"):
        """Probe an audio upload (or a video used for its sound): it must have sound and not be too long."""
        return uploads.check_audio(self.config, path, role)

    def check_video(self, path, role="video"):
        """Probe a video to score: a picture (not a still image), not too long, not too large to decode."""
        return uploads.check_video(self.config, path, role)


__all__ = ["DemoConfig", "GenerateResult", "LazyModelCache", "ModelStatus", "ScoreResult", "TalkFaceDemo",
           "check_ffmpeg", "config_from_args", "create_tiny_random_models", "parse_generator_specs"]
