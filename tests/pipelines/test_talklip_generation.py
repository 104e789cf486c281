"""TalkLipGenerator: utterance-level audio preparation, frame mapping, and generation through LipSyncPipeline
with a tiny random TalkLip model saved to a folder, on real media."""

import wave

import numpy as np
import pytest
import torch

from talkface import media
from talkface.models.wav2lip.feature_extraction_wav2lip import TalkingFaceAudioFeatureExtractor
from talkface.models.avhubert.feature_extraction_avhubert import AVHubertInputError, AVHubertFeatureExtractor
from talkface.models.talklip import TalkLipModel
from talkface.pipelines.lipsync.adapters.talklip import TalkLipGenerator, align_rows_centered, video_frame_rows
from talkface.pipelines.lipsync.generator import load_generator
from tests.models.test_modeling_talklip import randomise_batch_norm, tiny_config
from tests.utils import data_file

CLIP = "clip07_edtalk_mouth_source_muxed.mkv"  # 256x256, 25 fps, tight face, 16 kHz speech
SPEECH = "speech04_retalking_audio1.wav"


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def speech():
    return media.read_audio(data_file(SPEECH), 16000)  # mono float32 at 16 kHz


@pytest.fixture(scope="module")
def generator():
    torch.manual_seed(0)
    return TalkLipGenerator(randomise_batch_norm(TalkLipModel(tiny_config())).eval())


@pytest.fixture(scope="module")
def tiny_talklip_folder(tmp_path_factory, generator):
    folder = tmp_path_factory.mktemp("tiny_talklip")
    generator.model.save_pretrained(folder)
    AVHubertFeatureExtractor().save_pretrained(folder)
    return folder


# --- alignment and frame mapping ----------------------------------------------------------------------------------


def test_centered_alignment_trims_both_ends_and_pads_the_end():
    rows = np.arange(7, dtype=np.float32)[:, None].repeat(2, axis=1)
    assert align_rows_centered(rows, 4)[:, 0].tolist() == [1, 2, 3, 4]  # 3 surplus: 1 at the start, 2 at the end
    assert align_rows_centered(rows, 6)[:, 0].tolist() == [0, 1, 2, 3, 4, 5]  # 1 surplus: at the end
    padded = align_rows_centered(rows[:3], 5)
    assert padded[:, 0].tolist() == [0, 1, 2, 0, 0] and not padded[3:].any()
    assert align_rows_centered(rows, 7) is rows


def test_video_frames_take_the_row_containing_their_centre():
    assert video_frame_rows(5, 25.0, 5, feature_rate=25.0).tolist() == [0, 1, 2, 3, 4]
    assert video_frame_rows(6, 50.0, 3, feature_rate=25.0).tolist() == [0, 0, 1, 1, 2, 2]
    assert video_frame_rows(3, 12.5, 6, feature_rate=25.0).tolist() == [1, 3, 5]
    # 30 fps: frame i's centre at (i + 0.5) / 30 s
    assert video_frame_rows(7, 30.0, 6, feature_rate=25.0).tolist() == [0, 1, 2, 2, 3, 4, 5]
    assert video_frame_rows(4, 25.0, 2, feature_rate=25.0).tolist() == [0, 1, 1, 1]  # clamped to the last row


# --- prepare_audio ------------------------------------------------------------------------------------------------


def test_prepare_audio_runs_the_global_encoder_once_over_the_utterance(generator, speech):
    waveform = speech[:16000 + 320]  # 1.02 s: 26 frames at 25 fps
    prepared = generator.prepare_audio(waveform, 16000, 25.0)
    assert prepared.num_frames == 26 and prepared.per_frame.shape == (26, 16) and prepared.fps == 25.0
    # same numbers as AV-HuBERT's own feature extractor (no trimming needed here) -> encoder -> audio_map
    features = AVHubertFeatureExtractor()(waveform, sampling_rate=16000, num_video_frames=26)["audio_features"]
    with torch.no_grad():
        hidden = generator.model.encode_audio(features)[0]
        expected = generator.model.audio_map(hidden)
    torch.testing.assert_close(prepared.per_frame, expected, rtol=0, atol=1e-6)


def test_surplus_rows_are_trimmed_centred(generator, speech):
    waveform = speech[:16000]
    extractor = generator.feature_extractor
    stacked = extractor.stacked_features(waveform)
    features = generator.audio_features(waveform, 16000)
    assert len(features) == 25
    expected = torch.nn.functional.layer_norm(torch.from_numpy(align_rows_centered(stacked, 25)), (104,))
    torch.testing.assert_close(features, expected)
    # with more rows than frames the first kept row is row (surplus // 2)
    longer = np.concatenate([stacked, stacked[:3]])
    assert np.array_equal(align_rows_centered(longer, 25)[0], longer[1])


def test_other_frame_rates_reuse_the_25hz_rows(generator, speech):
    waveform = speech[:16000]
    at_25 = generator.prepare_audio(waveform, 16000, 25.0).per_frame
    at_50 = generator.prepare_audio(waveform, 16000, 50.0)
    assert at_50.num_frames == 50
    torch.testing.assert_close(at_50.per_frame, at_25.repeat_interleave(2, dim=0), rtol=0, atol=0)
    at_30 = generator.prepare_audio(waveform, 16000, 30.0)
    rows_at_30 = torch.from_numpy(video_frame_rows(30, 30.0, 25, feature_rate=25.0))
    torch.testing.assert_close(at_30.per_frame, at_25[rows_at_30], rtol=0, atol=0)


def test_long_utterances_are_encoded_in_chunks(speech):
    torch.manual_seed(0)
    model = TalkLipModel(tiny_config()).eval()
    whole = TalkLipGenerator(model)
    chunked = TalkLipGenerator(model, max_chunk_seconds=1.0, chunk_context_seconds=0.2)  # 25 rows: 5 + 15 + 5
    features = whole.audio_features(speech[:3 * 16000], 16000)  # 75 rows
    single = whole.encode_utterance(features)
    pieces = chunked.encode_utterance(features)
    assert pieces.shape == single.shape == (75, 16)
    # rows 15..29 come from the window 10..35 (5 rows of context each side)
    with torch.no_grad():
        window = model.audio_map(model.encode_audio(features[10:35].T[None])[0])
    torch.testing.assert_close(pieces[15:30], window[5:20], rtol=0, atol=1e-6)
    assert not torch.allclose(pieces, single)  # attention is global: chunks are an approximation
    with pytest.raises(ValueError, match="chunk_context_seconds"):
        TalkLipGenerator(model, max_chunk_seconds=1.0, chunk_context_seconds=0.5)


def test_wrong_sampling_rate_is_refused(generator, speech):
    with pytest.raises(AVHubertInputError, match="16000 Hz"):
        generator.prepare_audio(speech[:8000], 8000, 25.0)


# --- generate -----------------------------------------------------------------------------------------------------


def test_generate_converts_rgb_to_the_bgr_network_and_back(generator, speech):
    prepared = generator.prepare_audio(speech[:16000], 16000, 25.0)
    masked, reference = torch.rand(2, 3, 24, 24), torch.rand(2, 3, 24, 24)
    masked[:, :, 12:] = 0
    indices = torch.tensor([3, 20])
    generated = generator.generate(masked, reference, prepared, indices)
    with torch.no_grad():
        faces = torch.cat([masked[:, [2, 1, 0]], reference[:, [2, 1, 0]]], dim=1)
        expected = generator.model(faces, audio_embeds=prepared.per_frame[indices]).generated_faces[:, [2, 1, 0]]
    torch.testing.assert_close(generated, expected, rtol=0, atol=0)


def test_local_encoder_gets_mel_windows(speech):
    torch.manual_seed(0)
    local = TalkLipGenerator(TalkLipModel(tiny_config(audio_encoder_type="local")).eval())
    assert isinstance(local.feature_extractor, TalkingFaceAudioFeatureExtractor)
    prepared = local.prepare_audio(speech[:16000], 16000, 25.0)
    assert prepared.per_frame.shape == (25, 1, 80, 16)
    generated = local.generate(torch.rand(2, 3, 24, 24), torch.rand(2, 3, 24, 24), prepared, torch.tensor([0, 24]))
    assert generated.shape == (2, 3, 24, 24)


def test_load_generator_picks_the_talklip_adapter(tiny_talklip_folder):
    loaded = load_generator(tiny_talklip_folder)
    assert isinstance(loaded, TalkLipGenerator) and isinstance(loaded.feature_extractor, AVHubertFeatureExtractor)
    assert loaded.img_size == 24


# --- the pipeline on a real clip ----------------------------------------------------------------------------------


def test_pipeline_end_to_end_on_a_real_clip(tmp_path, tiny_talklip_folder, speech, mediapipe_backend):
    from talkface.pipelines.lipsync.pipeline import LipSyncPipeline

    frames = media.read_frames(data_file(CLIP), max_frames=20)
    clip = tmp_path / "clip.mp4"
    with media.VideoWriter(clip, fps=25, width=frames.shape[2], height=frames.shape[1]) as writer:
        for frame in frames:
            writer.write(frame)
    audio = tmp_path / "speech.wav"
    with wave.open(str(audio), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(16000)
        wav.writeframes((np.clip(speech[16000:16000 + 12800], -1, 1) * 32767).astype("<i2").tobytes())

    pipeline = LipSyncPipeline.from_pretrained(tiny_talklip_folder, device="cpu", face_backend=mediapipe_backend)
    assert isinstance(pipeline.generator, TalkLipGenerator)
    out = tmp_path / "talklip.mp4"
    result = pipeline(face=clip, audio=audio, out=out, progress=False)
    info = media.probe(out)
    assert result.num_frames == info.num_frames == 20 and info.has_audio
    assert result.frames_without_face == 0
    output = media.read_frames(out)
    assert np.abs(output[0].astype(int) - frames[0].astype(int)).max() > 30  # a (random) face was pasted

    # a photo at 30 fps: the 25 Hz audio rows are mapped onto the 30 fps grid
    out = tmp_path / "photo.mp4"
    result = pipeline(face=data_file("photo01_sadtalker_people_0.png"), audio=audio, out=out, fps=30,
                      progress=False)
    assert result.num_frames == 24 and media.probe(out).fps == pytest.approx(30)
