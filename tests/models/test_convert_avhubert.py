"""The fairseq-free AV-HuBERT converter: safe loading, key mapping, config inference, tokenizer extraction, CLI."""

import json
import pickle
import re
import sys
import types

import pytest
import torch

from talkface.cli import main as talkface_main
from talkface.errors import ModelLoadError
from talkface.models.avhubert import AVHubertConfig, AVHubertForLipReading, AVHubertModel
from talkface.models.avhubert.convert_avhubert_fairseq_checkpoint import (
    config_from_fairseq_checkpoint,
    convert_avhubert_state_dict,
    convert_fairseq_checkpoint,
    fold_weight_norm,
    load_fairseq_checkpoint,
    tokenizer_from_task_state,
)
from talkface.models.avhubert.fairseq_stubs import (
    PickledObjectStub,
    checkpoint_stub_classes,
    make_stub_class,
    stub_fields,
)
from talkface.models.avhubert.tokenization_avhubert import AVHubertTokenizer
from tests.utils import formula_state_dict, golden_file, load_golden, shared_file

HELLO_IDS = [64, 72, 54, 163, 33, 23, 8, 724]  # "hello world this is a test" (TECH.md §8, checked with fairseq)


# --- helpers ------------------------------------------------------------------------------------------------------


def save_fairseq_style(obj, path):
    """torch.save `obj` with the stub classes pickled under fairseq's names, as if fairseq were installed.

    The stubs are made importable under those names only while saving, so conversion afterwards sees the real
    sentencepiece module.
    """
    with pytest.MonkeyPatch.context() as patch:
        for stub in checkpoint_stub_classes():
            module_name = stub.__module__
            if module_name == "argparse":
                continue
            parts = module_name.split(".")
            for depth in range(1, len(parts) + 1):
                name = ".".join(parts[:depth])
                if name not in sys.modules:
                    patch.setitem(sys.modules, name, types.ModuleType(name))
            patch.setattr(sys.modules[module_name], stub.__qualname__, stub, raising=False)
        torch.save(obj, path)


def load_task_state():
    path = shared_file("reference", "task_state.pt")
    with torch.serialization.safe_globals(checkpoint_stub_classes(path)):
        return torch.load(path, map_location="cpu", weights_only=True)


def golden_cfg():
    return json.loads(golden_file("avhubert_cfg.json").read_text())


def golden_seq2seq_checkpoint(task_state=None):
    cfg = golden_cfg()
    model_cfg = dict(cfg["seq2seq_model"], w2v_args={"model": cfg["model"], "task": cfg["task"]})
    checkpoint = {"cfg": {"model": model_cfg, "task": cfg["task"]},
                  "model": formula_state_dict("avhubert_seq2seq_keys.json")}
    if task_state is not None:
        checkpoint["task_state"] = task_state
    return checkpoint


def golden_pretrain_checkpoint():
    cfg = golden_cfg()
    state_dict = formula_state_dict("avhubert_pretrain_keys.json")
    return {"cfg": {"model": cfg["model"], "task": cfg["task"]}, "model": state_dict}


# --- task_state.pt and the tokenizer ------------------------------------------------------------------------------


def test_task_state_needs_stubs_and_loads_with_them():
    path = shared_file("reference", "task_state.pt")
    with pytest.raises(pickle.UnpicklingError):
        torch.load(path, map_location="cpu", weights_only=True)
    task_state = load_task_state()
    assert sorted(task_state) == ["dictionaries", "s2s_tokenizer", "target_dictionary"]
    target = stub_fields(task_state["target_dictionary"])
    assert len(target["symbols"]) == 1000
    assert (target["bos_index"], target["pad_index"], target["eos_index"], target["unk_index"]) == (0, 1, 2, 3)
    assert len(stub_fields(task_state["dictionaries"][0])["symbols"]) == 2004  # km pretraining labels


def test_tokenizer_extracted_from_task_state():
    tokenizer = tokenizer_from_task_state(load_task_state())
    assert tokenizer.vocab_size == 1000
    assert tokenizer.model_proto == shared_file("reference", "avhubert_spm_unigram1000.model").read_bytes()
    assert tokenizer.encode("hello world this is a test", add_eos=False) == HELLO_IDS
    assert tokenizer.encode("Hello World this is a test") == HELLO_IDS + [2]  # lower-cased, eos appended
    assert tokenizer.decode([2] + HELLO_IDS + [2, 1, 1]) == "hello world this is a test"


def test_tokenizer_matches_golden_targets_and_round_trips(tmp_path):
    golden = load_golden("avhubert.npz")
    tokenizer = AVHubertTokenizer.from_model_file(shared_file("reference", "avhubert_spm_unigram1000.model"))
    sentence = golden_cfg()["sentence"]
    assert tokenizer.tokenize(sentence) == golden_cfg()["pieces"]
    assert tokenizer.encode(sentence) == golden["target_tokens"].tolist()
    tokenizer.save_pretrained(tmp_path)
    reloaded = AVHubertTokenizer.from_pretrained(tmp_path)
    assert reloaded.encode(sentence) == golden["target_tokens"].tolist()
    batch = reloaded(["a test", sentence], return_tensors="pt")
    assert batch["input_ids"].shape == (2, 22) and batch["input_ids"][0, 3:].eq(1).all()
    assert reloaded.batch_decode(batch["input_ids"]) == ["a test", sentence]


def test_tokenizer_rejects_mismatched_dictionary():
    task_state = load_task_state()
    symbols = list(stub_fields(task_state["target_dictionary"])["symbols"])
    symbols[10], symbols[11] = symbols[11], symbols[10]
    stub_fields(task_state["target_dictionary"])["symbols"] = symbols
    with pytest.raises(ModelLoadError, match="does not match"):
        tokenizer_from_task_state(task_state)


# --- state dict conversion ----------------------------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore:.*weight_norm.*:FutureWarning")
def test_weight_norm_folding_formula():
    generator = torch.Generator().manual_seed(0)
    weight_v = torch.randn(8, 2, 4, generator=generator)
    weight_g = torch.rand(1, 1, 4, generator=generator) + 0.5
    expected = weight_g * weight_v / weight_v.pow(2).sum(dim=(0, 1), keepdim=True).sqrt()
    torch.testing.assert_close(fold_weight_norm(weight_g, weight_v), expected)
    conv = torch.nn.utils.weight_norm(torch.nn.Conv1d(8, 8, 4, groups=4), name="weight", dim=2)
    torch.testing.assert_close(fold_weight_norm(conv.weight_g, conv.weight_v), conv.weight)


def test_convert_state_dict_maps_keys_and_is_idempotent():
    checkpoint = golden_pretrain_checkpoint()
    original = checkpoint["model"]
    shapes = {k: tuple(v.shape) for k, v in original.items()}
    config = config_from_fairseq_checkpoint(checkpoint["cfg"], shapes)
    converted = convert_avhubert_state_dict(original, config)
    # everything keeps its name except the positional convolution, whose weight-norm pair becomes one kernel
    assert set(original) - set(converted) == {"encoder.pos_conv.0.weight_g", "encoder.pos_conv.0.weight_v",
                                              "encoder.pos_conv.0.bias"}
    assert set(converted) - set(original) == {"encoder.pos_conv.conv.weight", "encoder.pos_conv.conv.bias"}
    assert torch.equal(converted["encoder.pos_conv.conv.bias"], original["encoder.pos_conv.0.bias"])
    assert torch.equal(converted["post_extract_proj.weight"], original["post_extract_proj.weight"])
    torch.testing.assert_close(
        converted["encoder.pos_conv.conv.weight"],
        fold_weight_norm(original["encoder.pos_conv.0.weight_g"], original["encoder.pos_conv.0.weight_v"]),
    )
    again = convert_avhubert_state_dict(converted, config)
    assert again.keys() == converted.keys() and all(again[k] is converted[k] for k in converted)
    assert set(converted) == set(AVHubertModel(config).state_dict())


def test_parametrized_weight_norm_spelling_is_accepted():
    checkpoint = golden_pretrain_checkpoint()
    original = dict(checkpoint["model"])
    original["encoder.pos_conv.0.parametrizations.weight.original0"] = original.pop("encoder.pos_conv.0.weight_g")
    original["encoder.pos_conv.0.parametrizations.weight.original1"] = original.pop("encoder.pos_conv.0.weight_v")
    config = config_from_fairseq_checkpoint(checkpoint["cfg"], {k: tuple(v.shape) for k, v in original.items()})
    converted = convert_avhubert_state_dict(original, config)
    expected = convert_avhubert_state_dict(checkpoint["model"], config)
    assert torch.equal(converted["encoder.pos_conv.conv.weight"], expected["encoder.pos_conv.conv.weight"])


def test_seq2seq_keys_and_dropped_buffers():
    checkpoint = golden_seq2seq_checkpoint()
    model, feature_extractor = convert_fairseq_checkpoint(checkpoint)
    assert isinstance(model, AVHubertForLipReading)
    state = model.state_dict()
    assert "decoder.embed_positions._float_tensor" not in state
    original = checkpoint["model"]
    assert torch.equal(state["avhubert.layer_norm.weight"], original["encoder.w2v_model.layer_norm.weight"])
    assert torch.equal(state["decoder.embed_tokens.weight"], original["decoder.embed_tokens.weight"])
    assert torch.equal(state["avhubert.mask_emb"], original["encoder.w2v_model.mask_emb"])  # kept: round trip
    assert "avhubert.final_proj.weight" not in state  # fine-tuned checkpoints have none
    assert model.config.vocab_size == 1000 and model.config.decoder_attention_heads == 4
    assert model.config.dropout == 0.0  # the fine-tuning cfg overrides the encoder's dropout
    assert feature_extractor.stack_order == 4 and feature_extractor.image_mean == pytest.approx(0.421)


def test_drop_pretraining_modules_and_missing_counters():
    checkpoint = golden_pretrain_checkpoint()
    for key in [k for k in checkpoint["model"] if k.endswith("num_batches_tracked")]:
        del checkpoint["model"][key]  # files saved by old torch versions lack them
    model, _ = convert_fairseq_checkpoint(checkpoint, keep_pretraining_modules=False)
    assert model.mask_emb is None and model.label_embs_concat is None and model.final_proj is None
    kept, _ = convert_fairseq_checkpoint(golden_pretrain_checkpoint())
    assert kept.config.use_final_proj and kept.config.num_label_embeddings == 104 and kept.config.final_dim == 32
    assert torch.equal(kept.label_embs_concat, golden_pretrain_checkpoint()["model"]["label_embs_concat"])


def test_wrong_checkpoint_is_refused_with_key_names():
    checkpoint = golden_pretrain_checkpoint()
    del checkpoint["model"]["encoder.layers.1.fc2.bias"]
    with pytest.raises(ModelLoadError, match="fc2.bias"):
        convert_fairseq_checkpoint(checkpoint)
    with pytest.raises(ModelLoadError, match="AV-HuBERT"):
        convert_fairseq_checkpoint({"model": {"conv1.weight": torch.zeros(3, 3)}})


# --- Base and Large layouts from keys/avhubert_derived.txt (shapes only, meta tensors) ---------------------------

_SECTION = re.compile(r"^##### (PRETRAINED|SEQ2SEQ) (Base|Large) .*: (\d+) entries, (\d+) params$")
_LAYER_COUNTS = {"Base": {"encoder": 12, "decoder": 6}, "Large": {"encoder": 24, "decoder": 9}}


def derived_layouts() -> dict:
    """{(kind, size): (shapes, entries, params)}, the elided layers 1..N-1 rebuilt from layer 0."""
    text = shared_file("reference", "keys", "avhubert_derived.txt").read_text()
    layouts, current = {}, None
    for line in text.splitlines():
        match = _SECTION.match(line)
        if match:
            current = (match[1], match[2])
            layouts[current] = ({}, int(match[3]), int(match[4]))
        elif line.strip() and current:
            key, shape = line.split("\t")
            layouts[current][0][key] = tuple(json.loads(shape.replace("(", "[").replace(",)", "]").replace(")", "]")))
    for (kind, size), (shapes, _, _) in layouts.items():
        for key in list(shapes):
            match = re.search(r"(^|\.)(encoder|decoder)\.layers\.0\.", key)
            if match:
                stack = match[2]
                for index in range(1, _LAYER_COUNTS[size][stack]):
                    shapes[key.replace(f"{stack}.layers.0.", f"{stack}.layers.{index}.", 1)] = shapes[key]
    return layouts


# sparse cfgs as the released files have them: only the yaml overrides (no dims, no heads for the encoder)
_RELEASED_PRETRAIN_CFG = {"model": {"_name": "av_hubert", "layer_norm_first": True, "audio_feat_dim": 104,
                                    "final_dim": 256, "untie_final_proj": True, "modality_dropout": 0.5,
                                    "audio_dropout": 0.5, "feature_grad_mult": 0.1, "encoder_layerdrop": 0.05},
                          "task": {"_name": "av_hubert_pretraining", "stack_order_audio": 4, "normalize": True,
                                   "sample_rate": 25, "image_aug": True}}


@pytest.mark.parametrize("size", ["Base", "Large"])
@pytest.mark.parametrize("kind", ["PRETRAINED", "SEQ2SEQ"])
def test_released_layouts_convert_on_meta(kind, size):
    shapes, entries, params = derived_layouts()[(kind, size)]
    assert len(shapes) == entries  # the elided layers were rebuilt completely
    original = {key: torch.empty(shape, device="meta") for key, shape in shapes.items()}
    if kind == "PRETRAINED":
        cfg = _RELEASED_PRETRAIN_CFG
    else:
        decoder_heads = {"Base": 4, "Large": 8}[size]
        cfg = {"model": {"_name": "av_hubert_seq2seq", "decoder_attention_heads": decoder_heads,
                         "decoder_normalize_before": True, "share_decoder_input_output_embed": True,
                         "no_scale_embedding": True, "w2v_args": _RELEASED_PRETRAIN_CFG},
               "task": {"modalities": ["video"], "stack_order_audio": 4, "normalize": True}}
    model, _ = convert_fairseq_checkpoint({"cfg": cfg, "model": original})
    preset = AVHubertConfig.base() if size == "Base" else AVHubertConfig.large()
    for field in ("encoder_layers", "encoder_embed_dim", "encoder_ffn_embed_dim", "encoder_attention_heads",
                  "conv_pos", "conv_pos_groups", "audio_feat_dim", "layer_norm_first", "resnet_channels"):
        assert getattr(model.config, field) == getattr(preset, field), field
    if kind == "SEQ2SEQ":
        assert isinstance(model, AVHubertForLipReading)
        for field in ("decoder_layers", "decoder_embed_dim", "decoder_ffn_embed_dim", "decoder_attention_heads",
                      "vocab_size"):
            assert getattr(model.config, field) == getattr(preset, field), field
    else:
        assert isinstance(model, AVHubertModel) and model.config.use_final_proj
    # same parameters as the original, except that weight_g ([1, 1, 128]) is folded into the kernel
    num_params = sum(p.numel() for p in model.parameters())
    assert num_params + 128 == params


# --- the command line: real files, safe loading ------------------------------------------------------------------


def test_cli_converts_a_fine_tuned_checkpoint_file(tmp_path):
    checkpoint_path = tmp_path / "tiny_vsr.pt"
    save_fairseq_style(golden_seq2seq_checkpoint(task_state=load_task_state()), checkpoint_path)
    out_dir = tmp_path / "converted"
    assert talkface_main(["convert", "avhubert", "--checkpoint", str(checkpoint_path), "--out", str(out_dir)]) == 0
    names = {path.name for path in out_dir.iterdir()}
    assert {"config.json", "model.safetensors", "preprocessor_config.json", "tokenizer.model", "tokenizer_config.json",
            "README.md"} <= names
    model = AVHubertForLipReading.from_pretrained(out_dir).eval()
    tokenizer = AVHubertTokenizer.from_pretrained(out_dir)
    assert tokenizer.encode("hello world this is a test", add_eos=False) == HELLO_IDS
    golden = load_golden("avhubert.npz")
    with torch.no_grad():
        logits = model(audio_features=torch.from_numpy(golden["audio_in"])[None],
                       decoder_input_ids=torch.from_numpy(golden["prev_output_tokens"])[None]).logits
    torch.testing.assert_close(logits[0], torch.from_numpy(golden["s2s_logits_a"]), atol=1e-4, rtol=0)


def test_cli_converts_a_pretrained_checkpoint_file(tmp_path):
    dictionary = make_stub_class("fairseq.data.dictionary.Dictionary")
    km_dictionary = dictionary.__new__(dictionary)
    km_dictionary.__setstate__({"symbols": ["<s>", "<pad>", "</s>", "<unk>"] + [str(i) for i in range(100)]})
    checkpoint = dict(golden_pretrain_checkpoint(), task_state={"dictionaries": [km_dictionary]})
    checkpoint_path = tmp_path / "tiny_pretrain.pt"
    save_fairseq_style(checkpoint, checkpoint_path)
    loaded = load_fairseq_checkpoint(checkpoint_path)
    assert isinstance(loaded["task_state"]["dictionaries"][0], PickledObjectStub)
    out_dir = tmp_path / "encoder"
    args = ["convert", "avhubert", "--checkpoint", str(checkpoint_path), "--out", str(out_dir),
            "--drop-pretraining-modules"]
    assert talkface_main(args) == 0
    model = AVHubertModel.from_pretrained(out_dir)
    assert model.final_proj is None and not (out_dir / "tokenizer.model").exists()


class _RunsShellCommand:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.marker}",))


class _EvaluatesCode:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (eval, (f"open({str(self.marker)!r}, 'w').close()",))


class _AbusesStubName:
    """Names a fairseq class whose 'constructor' would run code if it were the real thing; the stub is inert."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        stub = make_stub_class("fairseq.data.dictionary.Dictionary")
        return (stub, (f"open({str(self.marker)!r}, 'w').close()",))


@pytest.mark.parametrize("payload", [_RunsShellCommand, _EvaluatesCode])
def test_malicious_pickle_is_refused_and_runs_nothing(tmp_path, capsys, payload):
    # prove the payload is live: an unrestricted unpickler runs it
    probe = tmp_path / "probe"
    pickle.loads(pickle.dumps(payload(probe)))
    assert probe.exists()

    marker = tmp_path / "pwned"
    checkpoint_path = tmp_path / "evil.pt"
    torch.save({"cfg": {}, "model": {"x": torch.zeros(1)}, "task_state": payload(marker)}, checkpoint_path)
    out_dir = tmp_path / "out"
    code = talkface_main(["convert", "avhubert", "--checkpoint", str(checkpoint_path), "--out", str(out_dir)])
    assert code == 2
    assert not marker.exists() and not out_dir.exists()
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and "refused to load" in error
    assert ("system" in error) if payload is _RunsShellCommand else ("builtins.eval" in error)


def test_stub_named_globals_stay_inert(tmp_path):
    marker = tmp_path / "pwned"
    checkpoint_path = tmp_path / "odd.pt"
    save_fairseq_style({"model": {"x": torch.zeros(1)}, "extra": _AbusesStubName(marker)}, checkpoint_path)
    loaded = load_fairseq_checkpoint(checkpoint_path)
    assert isinstance(loaded["extra"], PickledObjectStub) and loaded["extra"].args[0].startswith("open(")
    assert not marker.exists()


def test_numpy_scalars_in_extra_state_are_accepted(tmp_path):
    import numpy as np

    checkpoint = dict(golden_pretrain_checkpoint(), extra_state={"best": np.float64(1.5), "epoch": np.int64(3)})
    checkpoint_path = tmp_path / "with_numpy.pt"
    torch.save(checkpoint, checkpoint_path)
    loaded = load_fairseq_checkpoint(checkpoint_path)
    assert loaded["extra_state"]["best"] == 1.5
    model, _ = convert_fairseq_checkpoint(loaded)
    assert isinstance(model, AVHubertModel)


def test_tokenizer_from_hub_id_uses_the_hub_download(tmp_path, monkeypatch):
    import huggingface_hub

    tokenizer = AVHubertTokenizer.from_model_file(shared_file("reference", "avhubert_spm_unigram1000.model"))
    tokenizer.save_pretrained(tmp_path)
    requested = []

    def fake_download(repo_id, filename, **kwargs):
        requested.append((repo_id, filename))
        return str(tmp_path / filename)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_download)
    reloaded = AVHubertTokenizer.from_pretrained("someone/avhubert-base-vsr")
    assert reloaded.encode("hello world this is a test", add_eos=False) == HELLO_IDS
    assert ("someone/avhubert-base-vsr", "tokenizer.model") in requested

    def failing_download(repo_id, filename, **kwargs):
        raise OSError("offline")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", failing_download)
    with pytest.raises(ModelLoadError, match="tokenizer.model"):
        AVHubertTokenizer.from_pretrained("someone/missing")
