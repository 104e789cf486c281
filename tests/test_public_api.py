"""The lazily exported public API resolves, and `import talkface` stays light."""

import subprocess
import sys

import talkface


def test_every_public_name_resolves():
    for name in talkface.__all__:
        assert getattr(talkface, name) is not None, name


def test_import_is_light():
    code = ("import sys, talkface; heavy = [m for m in ('torch', 'transformers', 'gradio', 'accelerate', 'mediapipe')"
            " if m in sys.modules]; print(','.join(heavy))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == ""


def test_cli_help_lists_every_command():
    out = subprocess.run([sys.executable, "-m", "talkface", "--help"], capture_output=True, text=True).stdout
    for command in ("generate", "score", "lipread", "evaluate", "convert", "detect", "download"):
        assert command in out


def test_talkface_models_exports_every_public_class():
    """`from talkface.models import X` works for every class a model folder exports (issue 11), and `__all__`
    lists exactly what the package exports."""
    import inspect

    import talkface.models as models

    folders = [value for value in vars(models).values()
               if inspect.ismodule(value) and value.__name__.startswith("talkface.models.")
               and hasattr(value, "__all__")]
    assert len(folders) >= 10
    missing = []
    for folder in folders:
        for name in folder.__all__:
            value = getattr(folder, name)
            if inspect.isclass(value) and getattr(models, name, None) is not value:
                missing.append(f"{folder.__name__}.{name}")
    assert not missing, f"talkface.models does not export {', '.join(missing)}"
    assert len(set(models.__all__)) == len(models.__all__)
    for name in models.__all__:
        assert getattr(models, name) is not None, name
    exported_classes = {name for name, value in vars(models).items()
                        if inspect.isclass(value) and value.__module__.startswith("talkface.")}
    assert exported_classes <= set(models.__all__), sorted(exported_classes - set(models.__all__))
    for name in ("AVHubertModel", "AVHubertForLipReading", "AVHubertFeatureExtractor", "AVHubertTokenizer",
                 "Wav2LipModel", "TalkingFaceAudioFeatureExtractor", "SyncNetLSEFeatureExtractor", "TalkLipModel"):
        assert name in models.__all__, name
