"""AVHubertModel / AVHubertForLipReading: tiny-config behaviour and golden parity with the fairseq reference."""

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from transformers import AutoModelForSpeechSeq2Seq

from talkface.models.avhubert import AVHubertConfig, AVHubertForLipReading, AVHubertModel
from talkface.models.avhubert.convert_avhubert_fairseq_checkpoint import convert_fairseq_checkpoint
from talkface.models.avhubert.modeling_avhubert_lip_reading import label_smoothed_cross_entropy, shift_tokens_right
from tests.models.model_tester import ModelTesterMixin, randomise_batch_norm
from tests.utils import formula_state_dict, golden_file, load_golden

GOLDEN_ATOL = 1e-4  # golden/README.md: AV-HuBERT encoder and logits


def tiny_config(**overrides) -> AVHubertConfig:
    values = dict(
        encoder_layers=2, encoder_embed_dim=32, encoder_ffn_embed_dim=64, encoder_attention_heads=4,
        conv_pos=4, conv_pos_groups=4, audio_feat_dim=104, video_frontend_channels=8,
        resnet_channels=[8, 8, 16, 16], resnet_blocks=[1, 1, 1, 1],
        decoder_layers=2, decoder_embed_dim=32, decoder_ffn_embed_dim=64, decoder_attention_heads=4, vocab_size=40,
    )
    values.update(overrides)
    return AVHubertConfig(**values)


def tiny_inputs(batch=2, frames=5, size=32, seed=1):
    generator = torch.Generator().manual_seed(seed)
    audio = torch.randn(batch, 104, frames, generator=generator)
    video = torch.randn(batch, 1, frames, size, size, generator=generator)
    return audio, video


@pytest.fixture(scope="module")
def tiny_model():
    torch.manual_seed(0)
    return AVHubertModel(tiny_config()).eval()


@pytest.fixture(scope="module")
def tiny_lip_reader():
    torch.manual_seed(0)
    return AVHubertForLipReading(tiny_config()).eval()


# --- configuration ------------------------------------------------------------------------------------------------


def test_config_defaults_are_base_and_large_preset():
    base = AVHubertConfig()
    assert (base.encoder_layers, base.encoder_embed_dim, base.encoder_ffn_embed_dim, base.encoder_attention_heads) == (
        12, 768, 3072, 12)
    assert base.layer_norm_first and base.audio_feat_dim == 104 and base.conv_pos == 128 and base.conv_pos_groups == 16
    assert (base.decoder_layers, base.decoder_embed_dim, base.decoder_attention_heads) == (6, 768, 4)
    large = AVHubertConfig.large()
    large_encoder = (large.encoder_layers, large.encoder_embed_dim, large.encoder_ffn_embed_dim,
                     large.encoder_attention_heads)
    assert large_encoder == (24, 1024, 4096, 16)
    large_decoder = (large.decoder_layers, large.decoder_embed_dim, large.decoder_ffn_embed_dim,
                     large.decoder_attention_heads)
    assert large_decoder == (9, 1024, 4096, 8)
    assert base.hidden_size == 768 and large.num_hidden_layers == 24


BAD_CONFIGS = (
    (dict(encoder_attention_heads=5), "encoder_attention_heads"),
    (dict(conv_pos_groups=3), "conv_pos_groups"),
    (dict(modality_fuse="mean"), "modality_fuse"),
    (dict(activation_fn="swish"), "activation_fn"),
    (dict(resnet_channels=[8, 8, 16]), "resnet_channels"),
    (dict(dropout=1.5), "dropout"),
    (dict(decoder_attention_heads=3), "decoder_attention_heads"),
    (dict(eos_token_id=40), "eos_token_id"),
    (dict(encoder_layers=0), "encoder_layers"),
)


class TestAVHubertModel(ModelTesterMixin):
    model_class = AVHubertModel
    output_names = ("last_hidden_state",)
    bad_configs = BAD_CONFIGS
    batch_size = 2

    def get_config(self, **overrides):
        return tiny_config(**overrides)

    def prepare_model(self, model):
        return randomise_batch_norm(model)

    def get_inputs(self, batch_size, seed=0):
        audio, video = tiny_inputs(batch=batch_size, seed=seed)
        return {"audio_features": audio, "video": video}

    def expected_shapes(self, batch_size):
        return {"last_hidden_state": (batch_size, 5, 32)}


class TestAVHubertForLipReading(TestAVHubertModel):
    model_class = AVHubertForLipReading
    auto_class = AutoModelForSpeechSeq2Seq
    output_names = ("logits", "encoder_last_hidden_state")

    def get_inputs(self, batch_size, seed=0):
        _, video = tiny_inputs(batch=batch_size, seed=seed)
        tokens = torch.randint(3, 40, (batch_size, 4), generator=torch.Generator().manual_seed(seed))
        tokens[:, 0] = 2  # decoding starts with eos, as in fairseq
        return {"video": video, "decoder_input_ids": tokens}

    def expected_shapes(self, batch_size):
        return {"logits": (batch_size, 4, 40), "encoder_last_hidden_state": (batch_size, 5, 32)}


# --- encoder behaviour --------------------------------------------------------------------------------------------


def test_encoder_shapes_and_hidden_states(tiny_model):
    audio, video = tiny_inputs()
    with torch.no_grad():
        output = tiny_model(audio_features=audio, video=video, output_hidden_states=True)
    assert output.last_hidden_state.shape == (2, 5, 32)
    assert len(output.hidden_states) == 3  # encoder input + 2 layers
    # the full stack ends with the final LayerNorm; hidden_states[k] is layer k without it
    expected = tiny_model.encoder.layer_norm(output.hidden_states[-1])
    torch.testing.assert_close(output.last_hidden_state, expected)


def test_output_layer_semantics(tiny_model):
    audio, video = tiny_inputs()
    with torch.no_grad():
        full = tiny_model(audio_features=audio, video=video, output_hidden_states=True)
        layer1 = tiny_model(audio_features=audio, video=video, output_layer=1).last_hidden_state
        layer2 = tiny_model(audio_features=audio, video=video, output_layer=2).last_hidden_state
    torch.testing.assert_close(layer1, full.hidden_states[1])
    torch.testing.assert_close(layer2, full.hidden_states[2])
    assert not torch.allclose(layer2, full.last_hidden_state)  # output_layer=L is NOT output_layer=None
    with pytest.raises(ValueError, match="output_layer"):
        tiny_model(audio_features=audio, output_layer=3)


def test_missing_modality_uses_zero_placeholder(tiny_model):
    audio, video = tiny_inputs()
    with torch.no_grad():
        audio_only = tiny_model(audio_features=audio).last_hidden_state
        video_front = tiny_model.forward_video_frontend(video)
        audio_front = tiny_model.forward_audio_frontend(audio)
        # the placeholder is zeros *after* the front end, audio half first
        fused = tiny_model.fuse_features(audio_front, torch.zeros_like(video_front))
        manual, _ = tiny_model.encoder(fused)
        both = tiny_model(audio_features=audio, video=video).last_hidden_state
    torch.testing.assert_close(audio_only, manual)
    torch.testing.assert_close(tiny_model.encode_audio(audio), audio_only)
    assert not torch.allclose(audio_only, both, atol=1e-3)


def test_input_validation(tiny_model):
    audio, video = tiny_inputs()
    with pytest.raises(ValueError, match="neither"):
        tiny_model()
    with pytest.raises(ValueError, match="align the audio"):
        tiny_model(audio_features=audio[:, :, :4], video=video)
    with pytest.raises(ValueError, match="channel axis"):
        tiny_model(video=video[:, 0])
    with pytest.raises(ValueError, match="padding_mask"):
        tiny_model(video=video, padding_mask=torch.zeros(2, 4, dtype=torch.bool))


def test_padded_batch_matches_single_items(tiny_model):
    audio, video = tiny_inputs(frames=7)
    lengths = [7, 4]
    audio[1, :, 4:] = 0  # padding is zeros, as the reference collater makes it
    video[1, :, 4:] = 0
    padding_mask = torch.arange(7)[None, :] >= torch.tensor(lengths)[:, None]
    with torch.no_grad():
        batched = tiny_model(audio_features=audio, video=video, padding_mask=padding_mask)
        for row, length in enumerate(lengths):
            single = tiny_model(
                audio_features=audio[row : row + 1, :, :length], video=video[row : row + 1, :, :length]
            )
            torch.testing.assert_close(
                batched.last_hidden_state[row, :length], single.last_hidden_state[0], atol=1e-5, rtol=1e-5
            )
    assert torch.equal(batched.padding_mask, padding_mask)


def test_frozen_model_is_differentiable_wrt_video():
    frozen = AVHubertModel(tiny_config()).eval().requires_grad_(False)
    _, video = tiny_inputs()
    video = video.clone().requires_grad_(True)
    features = frozen.encode_video(video)
    features.pow(2).mean().backward()
    assert video.grad is not None and video.grad.abs().sum() > 0
    assert all(p.grad is None for p in frozen.parameters())


def test_pretraining_modules_are_optional():
    config = tiny_config(use_mask_embedding=True, num_label_embeddings=12, final_dim=8, use_final_proj=True)
    model = AVHubertModel(config)
    keys = model.state_dict().keys()
    assert {"mask_emb", "label_embs_concat", "final_proj.weight"} <= set(keys)
    assert model.mask_emb.shape == (104,) and model.label_embs_concat.shape == (12, 8)
    assert not {"mask_emb", "label_embs_concat", "final_proj.weight"} & set(AVHubertModel(tiny_config()).state_dict())


def test_post_ln_and_add_fusion_variants_run():
    model = AVHubertModel(tiny_config(layer_norm_first=False, modality_fuse="add", resnet_relu_type="relu")).eval()
    audio, video = tiny_inputs()
    with torch.no_grad():
        output = model(audio_features=audio, video=video)
    assert model.post_extract_proj is None
    assert output.last_hidden_state.shape == (2, 5, 32) and torch.isfinite(output.last_hidden_state).all()


# --- lip reader ---------------------------------------------------------------------------------------------------


def test_teacher_forcing_shapes_and_loss(tiny_lip_reader):
    audio, video = tiny_inputs()
    labels = torch.tensor([[5, 6, 7, 2], [8, 9, 2, 1]])
    output = tiny_lip_reader(video=video, labels=labels)
    assert output.logits.shape == (2, 4, 40)
    decoder_input_ids = shift_tokens_right(labels, 1, 2)
    assert decoder_input_ids.tolist() == [[2, 5, 6, 7], [2, 8, 9, 2]]
    keep = labels.ne(1)
    expected = F.cross_entropy(output.logits[keep], labels[keep])
    torch.testing.assert_close(output.loss, expected)
    # fairseq's label smoothing: (1 - eps - eps/(V-1)) * nll + eps/(V-1) * sum(-log p)
    smoothed = tiny_lip_reader(video=video, labels=labels, label_smoothing=0.1).loss
    log_probs = output.logits.log_softmax(-1)[keep]
    eps_i = 0.1 / 39
    manual = ((1 - 0.1 - eps_i) * -log_probs.gather(1, labels[keep][:, None])[:, 0] - eps_i * log_probs.sum(-1)).mean()
    torch.testing.assert_close(smoothed, manual)
    plain, _ = label_smoothed_cross_entropy(output.logits.detach(), labels, 0.0, 1, reduction="mean")
    assert plain.item() == pytest.approx(expected.item(), abs=1e-6)


def test_right_padded_targets_do_not_change_real_positions(tiny_lip_reader):
    _, video = tiny_inputs(batch=1)
    short = torch.tensor([[2, 5, 6]])
    padded = torch.tensor([[2, 5, 6, 1, 1]])
    with torch.no_grad():
        logits_short = tiny_lip_reader(video=video, decoder_input_ids=short).logits
        logits_padded = tiny_lip_reader(video=video, decoder_input_ids=padded).logits
    torch.testing.assert_close(logits_padded[:, :3], logits_short, atol=1e-5, rtol=1e-5)


def test_incremental_decoding_matches_teacher_forcing(tiny_lip_reader):
    _, video = tiny_inputs(batch=2)
    tokens = torch.tensor([[2, 5, 6, 7, 8], [2, 9, 10, 11, 3]])
    with torch.no_grad():
        encoder = tiny_lip_reader.avhubert(video=video)
        full = tiny_lip_reader.decoder(tokens, encoder.last_hidden_state)
        cache = [{} for _ in tiny_lip_reader.decoder.layers]
        steps = [tiny_lip_reader.decoder(tokens[:, i : i + 1], encoder.last_hidden_state, cache=cache)
                 for i in range(tokens.shape[1])]
    torch.testing.assert_close(torch.cat(steps, dim=1), full, atol=1e-5, rtol=1e-5)


def _sequence_score(model, video, sequence, length_penalty=1.0):
    """Teacher-forced sum of log-probs of `sequence` (start token first, eos last), length-normalised."""
    with torch.no_grad():
        log_probs = model(video=video, decoder_input_ids=sequence[None, :-1]).logits.log_softmax(-1)[0]
    total = log_probs.gather(1, sequence[1:, None]).sum()
    return float(total) / (len(sequence) - 1) ** length_penalty


def test_generate_greedy_equals_beam_of_one_and_scores_are_consistent(tiny_lip_reader):
    _, video = tiny_inputs(batch=2, frames=6)
    with torch.no_grad():
        encoder = tiny_lip_reader.avhubert(video=video)
        memory = encoder.last_hidden_state
        greedy = tiny_lip_reader._greedy_search(memory, None, 6, 1, 0.0, 1.0, True)
        beam_one = tiny_lip_reader._beam_search(memory, None, 1, 6, 1, 0.0, 1.0, True)
    assert [tokens for tokens, _ in greedy] == [tokens for tokens, _ in beam_one]
    for (_, score_a), (_, score_b) in zip(greedy, beam_one):
        assert score_a == pytest.approx(score_b, abs=1e-5)

    output = tiny_lip_reader.generate(video=video, num_beams=4, return_dict_in_generate=True)
    for row in range(2):
        sequence = output.sequences[row]
        sequence = sequence[: int(sequence.ne(1).sum())]
        assert sequence[0] == 2 and sequence[-1] == 2 and 2 not in sequence[1:-1].tolist()
        # the reported score is the teacher-forced score of the returned hypothesis (cache + positions are right)
        assert output.sequences_scores[row] == pytest.approx(_sequence_score(tiny_lip_reader, video[row : row + 1],
                                                                             sequence), abs=1e-4)


def test_generate_batch_equals_single(tiny_lip_reader):
    _, video = tiny_inputs(batch=2, frames=6)
    batched = tiny_lip_reader.generate(video=video, num_beams=3)
    for row in range(2):
        single = tiny_lip_reader.generate(video=video[row : row + 1], num_beams=3)[0]
        length = int(single.ne(1).sum())
        assert batched[row, :length].tolist() == single[:length].tolist()


def test_generation_length_rules(tiny_lip_reader):
    audio, video = tiny_inputs(batch=1, frames=6)
    # the reference reads src_len from the audio tensor's second axis (104 features) whenever audio is present
    assert tiny_lip_reader.reference_max_length(audio_features=audio, video=video) == 104
    assert tiny_lip_reader.reference_max_length(video=video) == 6
    assert tiny_lip_reader.reference_max_length(video=video, max_len_a=0.5, max_len_b=3) == 6
    capped = tiny_lip_reader.generate(video=video, num_beams=2, max_new_tokens=2)
    assert capped.shape[1] <= 4 and capped[0, int(capped[0].ne(1).sum()) - 1] == 2
    with pytest.raises(ValueError, match="min_length"):
        tiny_lip_reader.generate(video=video, max_new_tokens=2, min_length=3)


def test_lip_reader_round_trip_and_encoder_only_loading(tmp_path, tiny_lip_reader):
    tiny_lip_reader.save_pretrained(tmp_path)
    reloaded = AVHubertForLipReading.from_pretrained(tmp_path).eval()
    for key, value in tiny_lip_reader.state_dict().items():
        assert torch.equal(value, reloaded.state_dict()[key]), key
    # AVS metrics load only the encoder from a lip-reading folder
    encoder = AVHubertModel.from_pretrained(tmp_path).eval()
    _, video = tiny_inputs()
    with torch.no_grad():
        assert torch.equal(encoder(video=video).last_hidden_state,
                           tiny_lip_reader.avhubert(video=video).last_hidden_state)


# --- golden parity with the fairseq reference (formula weights through the converter) ----------------------------


def _golden_checkpoint(keys_json: str, seq2seq: bool) -> dict:
    golden_cfg = json.loads(golden_file("avhubert_cfg.json").read_text())
    if seq2seq:
        w2v_args = {"model": golden_cfg["model"], "task": golden_cfg["task"]}
        model_cfg = dict(golden_cfg["seq2seq_model"], w2v_args=w2v_args)
    else:
        model_cfg = golden_cfg["model"]
    return {"cfg": {"model": model_cfg, "task": golden_cfg["task"]}, "model": formula_state_dict(keys_json)}


@pytest.fixture(scope="module")
def golden():
    return load_golden("avhubert.npz")


@pytest.fixture(scope="module")
def golden_inputs(golden):
    audio = torch.from_numpy(golden["audio_in"])[None]  # (1, 104, 50)
    video = torch.from_numpy(golden["video_in"])[None, None]  # (1, 1, 50, 88, 88)
    return {"a": dict(audio_features=audio), "v": dict(video=video), "av": dict(audio_features=audio, video=video)}


def test_golden_encoder_parity(golden, golden_inputs):
    model, _ = convert_fairseq_checkpoint(_golden_checkpoint("avhubert_pretrain_keys.json", seq2seq=False))
    assert isinstance(model, AVHubertModel) and model.config.encoder_attention_heads == 4
    with torch.no_grad():
        np.testing.assert_allclose(model.forward_audio_frontend(golden_inputs["a"]["audio_features"])[0],
                                   golden["frontend_audio"], atol=GOLDEN_ATOL, rtol=0)
        np.testing.assert_allclose(model.forward_video_frontend(golden_inputs["v"]["video"])[0],
                                   golden["frontend_video"], atol=GOLDEN_ATOL, rtol=0)
        for modality, inputs in golden_inputs.items():
            output = model(**inputs, output_hidden_states=True)
            np.testing.assert_allclose(
                output.last_hidden_state[0], golden[f"enc_{modality}"], atol=GOLDEN_ATOL, rtol=0
            )
            for layer in (1, 2):
                np.testing.assert_allclose(output.hidden_states[layer][0], golden[f"enc_{modality}_layer{layer}"],
                                           atol=GOLDEN_ATOL, rtol=0)
        # the output_layer path itself (stops early, no final LayerNorm)
        layer1 = model(**golden_inputs["a"], output_layer=1).last_hidden_state[0]
        np.testing.assert_allclose(layer1, golden["enc_a_layer1"], atol=GOLDEN_ATOL, rtol=0)


def test_golden_seq2seq_parity(golden, golden_inputs):
    objects = convert_fairseq_checkpoint(_golden_checkpoint("avhubert_seq2seq_keys.json", seq2seq=True))
    model = objects[0]
    assert isinstance(model, AVHubertForLipReading)
    assert model.config.decoder_activation_fn == "relu" and model.config.decoder_normalize_before
    decoder_input_ids = torch.from_numpy(golden["prev_output_tokens"])[None]
    assert golden["prev_output_tokens"].tolist() == [2] + golden["target_tokens"].tolist()[:-1]
    with torch.no_grad():
        for modality, inputs in golden_inputs.items():
            output = model(**inputs, decoder_input_ids=decoder_input_ids)
            np.testing.assert_allclose(output.encoder_last_hidden_state[0], golden[f"s2s_enc_{modality}"],
                                       atol=GOLDEN_ATOL, rtol=0)
            np.testing.assert_allclose(output.logits[0], golden[f"s2s_logits_{modality}"], atol=GOLDEN_ATOL, rtol=0)
            np.testing.assert_allclose(output.logits[0].log_softmax(-1), golden[f"s2s_lprobs_{modality}"],
                                       atol=GOLDEN_ATOL, rtol=0)
