"""TalkLip's losses on hand-made cases with known values: label smoothing, InfoNCE, hybrid videos, lip-reader inputs,
and gradients (to the generated frames, never into the frozen lip reader)."""

import math

import pytest
import torch

from talkface.training.data import SyntheticTalkFaceDataset, collate_talkface
from talkface.training.losses.core import GeneratorLossInputs, build_generator_losses
from talkface.training.losses.talklip import (
    ContrastiveTerm,
    LipReadingLoss,
    LipReadingTerm,
    contrastive_sync_loss,
    info_nce,
    label_smoothed_cross_entropy,
    link_contrastive_to_lip_reading,
    lip_reader_input,
    paste_faces,
    sample_negative_indices,
    substitute_frames,
    talklip_lip_reader_video,
    window_flat_positions,
)
from talkface.models.avhubert import AVHubertConfig, AVHubertForLipReading
from talkface.models.avhubert import modeling_avhubert_lip_reading

T = 0.07


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


TINY_LIP_READER = dict(encoder_layers=1, encoder_embed_dim=16, encoder_ffn_embed_dim=32, encoder_attention_heads=2,
                       conv_pos=4, conv_pos_groups=2, video_frontend_channels=4, resnet_channels=[4, 4, 8, 8],
                       resnet_blocks=[1, 1, 1, 1], decoder_layers=1, decoder_embed_dim=16, decoder_ffn_embed_dim=32,
                       decoder_attention_heads=2, vocab_size=20, dropout=0.0, attention_dropout=0.0,
                       decoder_dropout=0.0)


@pytest.fixture(scope="module")
def lip_reader():
    torch.manual_seed(0)
    return AVHubertForLipReading(AVHubertConfig(**TINY_LIP_READER)).eval()


# --- label-smoothed cross-entropy ----------------------------------------------------------------------------------


def test_label_smoothing_formula_by_hand():
    # one target token, V = 4, logits [2, 0, 0, 0], target 0
    logits = torch.tensor([[2.0, 0.0, 0.0, 0.0]])
    denominator = math.exp(2) + 3
    log_p = [2 - math.log(denominator)] + [-math.log(denominator)] * 3
    eps, eps_i = 0.1, 0.1 / 3
    expected = (1 - eps - eps_i) * (-log_p[0]) + eps_i * sum(-v for v in log_p)
    loss, nll = label_smoothed_cross_entropy(logits, torch.tensor([0]), epsilon=0.1, ignore_index=1)
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    assert nll.item() == pytest.approx(-log_p[0], rel=1e-6)
    # target 2: the smoothing term is the same, the nll changes
    loss, _ = label_smoothed_cross_entropy(logits, torch.tensor([2]), epsilon=0.1, ignore_index=1)
    assert loss.item() == pytest.approx((1 - eps - eps_i) * (-log_p[2]) + eps_i * sum(-v for v in log_p), rel=1e-6)


def test_uniform_predictions_cost_log_v_per_token_summed_over_non_pad_tokens():
    # uniform p: (1 - eps - eps_i) log V + eps_i V log V = log V, whatever eps
    logits = torch.zeros(2, 3, 5)
    targets = torch.tensor([[4, 2, 1], [3, 1, 1]])  # pad = 1 ignored: 3 real tokens
    loss, nll = label_smoothed_cross_entropy(logits, targets, epsilon=0.1, ignore_index=1, reduction="sum")
    assert loss.item() == pytest.approx(3 * math.log(5), rel=1e-6) and nll.item() == pytest.approx(3 * math.log(5))
    mean, _ = label_smoothed_cross_entropy(logits, targets, epsilon=0.1, ignore_index=1, reduction="mean")
    assert mean.item() == pytest.approx(math.log(5), rel=1e-6)
    with pytest.raises(ValueError, match="reduction"):
        label_smoothed_cross_entropy(logits, targets, reduction="none")


def test_one_label_smoothed_cross_entropy_for_the_loss_and_the_lip_readers_head():
    # the training loss reuses the lip reader's own implementation (training may import models, not the reverse)
    assert label_smoothed_cross_entropy is modeling_avhubert_lip_reading.label_smoothed_cross_entropy
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 6, 20, generator=generator)
    targets = torch.randint(2, 20, (3, 6), generator=generator)
    targets[1, 4:] = 1
    summed, _ = label_smoothed_cross_entropy(logits, targets, 0.1, 1, reduction="sum")
    mean, _ = label_smoothed_cross_entropy(logits, targets, 0.1, 1, reduction="mean")
    torch.testing.assert_close(mean, summed / 16)  # 18 tokens, 2 of them pad


# --- InfoNCE ------------------------------------------------------------------------------------------------------


def test_info_nce_with_identical_and_orthogonal_vectors():
    eye = torch.eye(3)
    # positive identical to the anchor, one orthogonal negative: log(1 + e^(-1/t)) (t = 1 keeps float32 exact)
    loss = info_nce(eye[:1], eye[:1], eye[None, 1:2], temperature=1.0)
    assert loss.item() == pytest.approx(math.log(1 + math.exp(-1)), rel=1e-6)
    # positive and negatives all identical to the anchor: log(k + 1)
    same = torch.ones(1, 3) / math.sqrt(3)
    assert info_nce(same, same, same[None].expand(1, 4, 3), temperature=T).item() == pytest.approx(math.log(5))
    # positive orthogonal, negative identical: log(1 + e^(1/T))
    loss = info_nce(eye[:1], eye[1:2], eye[None, :1], temperature=T)
    assert loss.item() == pytest.approx(math.log(1 + math.exp(1 / T)), rel=1e-5)


def tilted_frames(num_frames: int, cosine: float):
    """Orthonormal audio embeddings, and visual features at `cosine` to their own audio, orthogonal to the rest."""
    audio = torch.eye(num_frames, num_frames + 1)
    visual = cosine * audio
    visual[:, -1] = math.sqrt(1 - cosine**2)
    return audio, visual


def test_contrastive_loss_with_orthonormal_frames():
    # N = 6 frames: positive logit cos / T, k = N // 2 = 3 orthogonal audio negatives at 0
    audio, visual = tilted_frames(6, 0.1)
    # the audio scale does not matter: both sides are normalised
    loss = contrastive_sync_loss(audio * 3.0, visual, generator=torch.Generator().manual_seed(0))
    assert loss.item() == pytest.approx(math.log(1 + 3 * math.exp(-0.1 / T)), rel=1e-5)


def test_negatives_are_other_audio_embeddings_capped_at_100():
    # identical audio embeddings: every negative scores like the positive, whatever the visual side -> log(k + 1)
    audio = torch.ones(8, 4)
    loss = contrastive_sync_loss(audio, audio.clone(), generator=torch.Generator().manual_seed(0))
    assert loss.item() == pytest.approx(math.log(4 + 1), rel=1e-5)
    # 300 frames: k = min(100, 150) = 100
    audio, visual = tilted_frames(300, 0.1)
    loss = contrastive_sync_loss(audio, visual, generator=torch.Generator().manual_seed(0))
    assert loss.item() == pytest.approx(math.log(1 + 100 * math.exp(-0.1 / T)), rel=1e-5)


def test_negative_sampling_excludes_self_without_replacement_and_is_deterministic():
    indices = sample_negative_indices(10, 5, torch.Generator().manual_seed(1))
    assert indices.shape == (10, 5)
    for row, drawn in enumerate(indices.tolist()):
        assert row not in drawn and len(set(drawn)) == 5 and all(0 <= i < 10 for i in drawn)
    torch.testing.assert_close(indices, sample_negative_indices(10, 5, torch.Generator().manual_seed(1)))
    with pytest.raises(ValueError, match="negatives"):
        sample_negative_indices(3, 3)
    with pytest.raises(ValueError, match="at least 2"):
        contrastive_sync_loss(torch.ones(1, 4), torch.ones(1, 4))


def test_contrastive_gradients_reach_the_audio_side_and_the_head():
    from talkface.models.talklip import TalkLipContrastiveHead

    head = TalkLipContrastiveHead(8, 6)
    audio = torch.randn(10, 8, requires_grad=True)
    visual = torch.randn(10, 6)
    contrastive_sync_loss(head(audio), visual, generator=torch.Generator().manual_seed(0)).backward()
    assert audio.grad is not None and audio.grad.abs().sum() > 0
    assert head.audio_projection.weight.grad is not None


# --- hybrid videos and lip-reader inputs ---------------------------------------------------------------------------


def test_window_positions_and_substitution():
    positions = window_flat_positions(torch.tensor([1, 0]), 2, sequence_length=5)
    assert positions.tolist() == [1, 2, 5, 6]
    video = torch.zeros(2, 5, 1)
    frames = torch.tensor([[1.0], [2.0], [3.0], [4.0]], requires_grad=True)
    hybrid = substitute_frames(video, frames, positions)
    assert hybrid[..., 0].tolist() == [[0, 1, 2, 0, 0], [3, 4, 0, 0, 0]]
    assert video.abs().sum() == 0  # out of place
    hybrid.sum().backward()
    assert frames.grad.tolist() == [[1.0]] * 4
    with pytest.raises(ValueError, match="positions"):
        substitute_frames(video, frames, torch.tensor([0, 1, 2, 10]))


def test_paste_faces_resizes_into_the_box_and_clips_it():
    frames = torch.full((2, 3, 10, 12), 7.0)
    faces = torch.full((2, 3, 4, 4), 0.5, requires_grad=True)
    boxes = torch.tensor([[2, 1, 8, 9], [9, 6, 20, 20]])  # the second box runs past the frame: clipped to 12x10
    pasted = paste_faces(frames, faces, boxes)
    assert torch.all(pasted[0, :, 1:9, 2:8] == 127.5) and torch.all(pasted[1, :, 6:10, 9:12] == 127.5)
    outside = torch.ones(2, 3, 10, 12, dtype=torch.bool)
    outside[0, :, 1:9, 2:8] = False
    outside[1, :, 6:10, 9:12] = False
    assert torch.all(pasted[outside] == 7.0)
    pasted.sum().backward()
    # every face pixel feeds the pasted region: gradient 255 * (box area / face area) in total per face
    assert faces.grad[0].sum().item() == pytest.approx(255.0 * 3 * 8 * 6, rel=1e-5)
    with pytest.raises(ValueError, match="empty"):
        paste_faces(frames[:1], faces[:1].detach(), torch.tensor([[5, 5, 5, 9]]))


def test_talklip_transform_is_gray_centre_crop_normalised():
    frames = torch.zeros(1, 2, 3, 160, 160)
    frames[:, :, 0] = 255.0  # pure red (RGB)
    frames[0, 1, :, 36:124, 36:124] = 0.0  # second frame: black inside the crop
    frames[0, 1, :, 35, 35] = 255.0  # ... and white just outside it
    video = talklip_lip_reader_video(frames)
    assert video.shape == (1, 1, 2, 88, 88)
    torch.testing.assert_close(video[0, 0, 0], torch.full((88, 88), (0.299 - 0.421) / 0.165))
    torch.testing.assert_close(video[0, 0, 1], torch.full((88, 88), -0.421 / 0.165))
    # the same pixels stored BGR give the same grey
    torch.testing.assert_close(talklip_lip_reader_video(frames.flip(2), channel_order="bgr"), video)
    padded = talklip_lip_reader_video(frames, padding_mask=torch.tensor([[False, True]]))
    assert padded[0, 0, 1].abs().sum() == 0 and padded[0, 0, 0].abs().sum() > 0
    # odd margins: the reference offset floor((W - 88) / 2)
    odd = talklip_lip_reader_video(torch.arange(97.0).expand(1, 1, 3, 97, 97))
    torch.testing.assert_close(odd[0, 0, 0, 0, :2], (torch.tensor([4.0, 5.0]) / 255 - 0.421) / 0.165)


def test_talklip_input_pastes_into_full_lrs2_frames_at_the_boxes():
    """160x160 frames with a face box: the generated 96x96 face is resized to the box, pasted, and the centre
    88x88 of the whole frame (rows/cols 36:124) is what the lip reader sees."""
    frames = torch.zeros(1, 3, 3, 160, 160, dtype=torch.uint8)  # black frames (B=1, T=3)
    boxes = torch.tensor([[[30, 40, 130, 140]] * 3])  # x1, y1, x2, y2: 100x100 faces
    generated = torch.full((1, 3, 96, 96), 1.0, requires_grad=True)  # a white face for frame 1
    video = lip_reader_input("talklip_center", frames, generated, torch.tensor([1]), context_boxes=boxes)
    white, black = (1.0 - 0.421) / 0.165, -0.421 / 0.165
    frame = video[0, 0, 1]  # crop rows/cols 36:124 of the frame; the box covers rows 40:140, cols 30:130
    torch.testing.assert_close(frame[4:, :], torch.full((84, 88), white))
    torch.testing.assert_close(frame[:4, :], torch.full((4, 88), black))  # rows 36:40 are above the box
    torch.testing.assert_close(video[0, 0, [0, 2]], torch.full((2, 88, 88), black))  # untouched frames
    video.sum().backward()
    assert generated.grad.abs().sum() > 0


@pytest.fixture(scope="module")
def batch():
    """Two synthetic items (96x96 faces, 12-frame context, 5-frame window) with transcripts."""
    dataset = SyntheticTalkFaceDataset(length=2, num_frames=5, img_size=96, context=True, context_frames=12, seed=3)
    batch = collate_talkface([dataset[0], dataset[1]])
    batch.target_tokens = torch.tensor([[5, 9, 4, 2], [7, 2, 1, 1]])
    return batch


@pytest.mark.parametrize("mode", ["talklip_center", "mouth_roi"])
def test_real_frames_in_the_window_give_the_plain_ground_truth_input(batch, mode):
    """Substituting the ground truth for itself changes nothing: the hybrid video is the real one."""
    positions = window_flat_positions(batch.window_start, 5, 12)
    real = batch.context_frames.reshape(24, 3, 96, 96)[positions].float() / 255.0
    hybrid = lip_reader_input(mode, batch.context_frames, real, positions, context_affines=batch.context_affines)
    assert hybrid.shape == (2, 1, 12, 88, 88)
    if mode == "talklip_center":
        expected = talklip_lip_reader_video(batch.context_frames.float())
    else:
        from talkface.faces.mouth_roi import crop_mouth_differentiable

        crops = crop_mouth_differentiable(batch.context_frames.reshape(24, 3, 96, 96).float() / 255.0,
                                          batch.context_affines.reshape(24, 2, 3))
        expected = crops.reshape(2, 12, 1, 88, 88).permute(0, 2, 1, 3, 4)
    torch.testing.assert_close(hybrid, expected, rtol=0, atol=1e-5)


def test_generated_frames_only_change_their_positions(batch):
    positions = window_flat_positions(batch.window_start, 5, 12)
    generated = torch.zeros(10, 3, 96, 96)
    hybrid = lip_reader_input("talklip_center", batch.context_frames, generated, positions)
    real = talklip_lip_reader_video(batch.context_frames.float())
    changed = (hybrid != real).flatten(3).any(-1)[:, 0]  # (B, T)
    expected = torch.zeros(2, 12, dtype=torch.bool)
    for b in range(2):
        expected[b, batch.window_start[b]:batch.window_start[b] + 5] = True
    assert torch.equal(changed, expected)
    generated_frames = hybrid[:, 0][changed]  # (10, 88, 88): a black face is the normalised zero everywhere
    torch.testing.assert_close(generated_frames, torch.full((10, 88, 88), -0.421 / 0.165))


# --- lip-reading loss ---------------------------------------------------------------------------------------------


def test_lip_reading_loss_is_teacher_forced_label_smoothed_ce(lip_reader):
    generator = torch.Generator().manual_seed(0)
    video = torch.randn(2, 1, 6, 88, 88, generator=generator)
    targets = torch.tensor([[5, 9, 4, 2], [7, 2, 1, 1]])
    loss_fn = LipReadingLoss(lip_reader, label_smoothing=0.1, reduction="sum")
    loss, nll, states = loss_fn(video, targets)
    with torch.no_grad():
        logits = lip_reader(video=video, labels=targets).logits
    expected, _ = label_smoothed_cross_entropy(logits, targets, 0.1, 1, "sum")
    torch.testing.assert_close(loss, expected)
    assert states.shape == (2, 6, 16)
    # mean = sum / number of non-pad tokens (6), and equals the AV-HuBERT head's own loss
    mean, _, _ = LipReadingLoss(lip_reader, reduction="mean")(video, targets)
    torch.testing.assert_close(mean, loss / 6)
    torch.testing.assert_close(mean, lip_reader(video=video, labels=targets, label_smoothing=0.1).loss)


def test_gradient_reaches_the_generated_frames_not_the_lip_reader(batch, lip_reader):
    [term] = [s.term for s in build_generator_losses({"lip_reading": {"lip_reader": {"config": TINY_LIP_READER}}})]
    assert isinstance(term, LipReadingTerm) and term.lip_reader_input_mode == "mouth_roi"
    for mode in ("mouth_roi", "talklip_center"):
        term = LipReadingTerm(LipReadingLoss(lip_reader), lip_reader_input_mode=mode)
        term.train()
        assert not term.loss.lip_reader.training
        generated = torch.rand(2, 5, 3, 96, 96, requires_grad=True)
        inputs = GeneratorLossInputs(generated_frames=generated, batch=batch)
        loss = term(inputs)
        loss.backward()
        assert torch.isfinite(loss) and generated.grad is not None and generated.grad.abs().sum() > 0
        assert all(p.grad is None and not p.requires_grad for p in lip_reader.parameters())
        assert inputs.extras["lip_reader_output"]["encoder_states"].shape == (2, 12, 16)
        assert term.last_metrics()["lip_nll_per_token"] > 0


def test_contrastive_term_uses_the_lip_readers_features_at_the_generated_frames(batch, lip_reader):
    losses = build_generator_losses({"lip_reading": {"lip_reader": {"config": TINY_LIP_READER}, "weight": 1e-5},
                                     "contrastive": {"weight": 1e-3, "temperature": 0.07}})
    lip_term, contrastive_term = (s.term for s in losses)
    assert isinstance(contrastive_term, ContrastiveTerm) and losses[1].weight == 1e-3
    audio = torch.randn(10, 16, requires_grad=True)
    generated = torch.rand(2, 5, 3, 96, 96, requires_grad=True)
    inputs = GeneratorLossInputs(generated_frames=generated, batch=batch,
                                 extras={"contrastive_audio_embeds": audio})
    with pytest.raises(ValueError, match="lip_reading"):
        contrastive_term(inputs)  # not linked and the lip reader has not run
    lip_term(inputs)
    torch.manual_seed(0)
    loss = contrastive_term(inputs)  # reuses the lip reader's output of this step
    states = inputs.extras["lip_reader_output"]["encoder_states"]
    visual = torch.stack([states[b, batch.window_start[b] + j] for b in range(2) for j in range(5)])
    torch.manual_seed(0)
    torch.testing.assert_close(loss, contrastive_sync_loss(audio, visual))
    loss.backward()
    assert audio.grad.abs().sum() > 0 and generated.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="projected audio"):
        contrastive_term(GeneratorLossInputs(generated_frames=generated, batch=batch))
    # linked, the contrastive term may come first: it runs the lip reader, which the lip term then reuses
    link_contrastive_to_lip_reading(losses)
    fresh = GeneratorLossInputs(generated_frames=generated.detach(), batch=batch,
                                extras={"contrastive_audio_embeds": audio.detach()})
    torch.manual_seed(0)
    first = contrastive_term(fresh)
    cached = fresh.extras["lip_reader_output"]
    assert lip_term(fresh) is cached["loss"]
    torch.testing.assert_close(first, loss.detach())


def test_bad_options_raise():
    with pytest.raises(ValueError, match="lip_reader_input"):
        build_generator_losses({"lip_reading": {"lip_reader": {"config": TINY_LIP_READER},
                                                "lip_reader_input": "lips"}})
    with pytest.raises(ValueError, match="reduction"):
        build_generator_losses({"lip_reading": {"lip_reader": {"config": TINY_LIP_READER}, "reduction": "avg"}})
    with pytest.raises(ValueError, match="does not use"):
        build_generator_losses({"contrastive": {"temperatur": 0.1}})
