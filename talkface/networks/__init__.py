"""The networks of the generation path in plain PyTorch: no transformers, no model registry (issue 14, start-up).

`talkface.models` makes every network a transformers model and registers all of them with the Auto classes when it
is imported; that costs seconds (transformers' modeling stack pulls in torch.distributed, torch._dynamo, sympy,
scipy.optimize, ...). A module under `talkface.models` cannot be imported without that package's `__init__`, so
the parts that `talkface generate` needs live here instead, and the transformers classes are built from them:

* `wav2lip`: Wav2Lip's layers (`Wav2LipLayers`, which `talkface.models.wav2lip.Wav2LipModel` inherits, so state-dict
  keys and outputs are the same) and `load_wav2lip_network`, which loads a converted folder (config.json +
  model.safetensors) into a plain `nn.Module` holding those layers;
* `wav2lip_audio`: the Wav2Lip mel spectrogram (`Wav2LipMelFeatures`, the base of
  `talkface.models.wav2lip.TalkingFaceAudioFeatureExtractor`);
* `optimization`: BatchNorm folding and channels-last weights (`talkface.models.optimization` re-exports it).

Nothing here imports talkface beyond `talkface.errors`; `import talkface.networks` itself imports nothing.
"""
