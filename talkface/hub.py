"""Model cards and Hub helpers.

`write_model_card(folder, kind, model=None, **info)` writes README.md (a Hugging Face model card with a YAML
header) into a saved model folder. Cards are rendered from the templates in talkface/model_cards_templates/
when one exists for the kind, else from the generic template below.
"""

from pathlib import Path

# kind -> facts that the card states (licence inherited from the original weights)
MODEL_FACTS = {
    "wav2lip": {"license": "other", "license_name": "wav2lip-non-commercial",
                "license_note": "Wav2Lip's weights are released for personal/research/non-commercial use only.",
                "title": "Wav2Lip generator"},
    "wav2lip-discriminator": {"license": "other", "license_name": "wav2lip-non-commercial",
                              "license_note": "Wav2Lip's weights are released for personal/research/non-commercial use only.",
                              "title": "Wav2Lip visual-quality discriminator"},
    "syncnet": {"license": "other", "license_name": "wav2lip-non-commercial",
                "license_note": "Wav2Lip's weights are released for personal/research/non-commercial use only.",
                "title": "Wav2Lip lip-sync expert (SyncNet)"},
    "syncnet-lse": {"license": "mit", "license_note": "syncnet_python is MIT-licensed.", "title": "SyncNet (LSE-C/LSE-D)"},
    "avhubert": {"license": "other", "license_name": "av-hubert-license",
                 "license_note": "AV-HuBERT's weights are under the AV-HuBERT license (non-commercial).", "title": "AV-HuBERT"},
    "talklip": {"license": "other", "license_name": "talklip",
                "license_note": "TalkLip builds on Wav2Lip and AV-HuBERT weights, which are non-commercial.",
                "title": "TalkLip generator"},
    "talkface": {"license": "other", "license_name": "non-commercial",
                 "license_note": "Trained with a frozen Wav2Lip expert and AV-HuBERT, both non-commercial.",
                 "title": "talkface generator"},
    "vgg19": {"license": "bsd-3-clause", "license_note": "torchvision's VGG-19 ImageNet weights.", "title": "VGG-19"},
    "fid-inception": {"license": "apache-2.0", "license_note": "pytorch-fid's FID-Inception weights.",
                      "title": "FID Inception-v3"},
    "gfpgan": {"license": "other", "license_name": "gfpgan",
               "license_note": "GFPGAN is Apache-2.0 code; its weights carry the StyleGAN2 NVIDIA licence terms for parts.",
               "title": "GFPGAN v1.4 (clean)"},
}

_GENERIC = """---
license: {license}
{license_name_line}library_name: talkface
tags:
- talking-face
- lip-sync
- talkface
---

# {title}

Converted with `talkface convert {kind}` from `{source_checkpoint}`.

## Licence

{license_note}

## Out-of-scope use

Impersonation, non-consensual or deceptive media. Videos generated with talkface carry a watermark and
container metadata that mark them as generated.
"""


def write_model_card(folder, kind: str, model=None, **info):
    facts = dict(MODEL_FACTS.get(kind, {"license": "other", "license_note": "See the original project.", "title": kind}))
    facts.update(info)
    facts.setdefault("source_checkpoint", "the original checkpoint")
    facts["kind"] = kind
    facts["license_name_line"] = f"license_name: {facts['license_name']}\n" if facts.get("license_name") else ""
    text = _GENERIC.format(**facts)
    path = Path(folder) / "README.md"
    path.write_text(text, encoding="utf-8")
    return path
