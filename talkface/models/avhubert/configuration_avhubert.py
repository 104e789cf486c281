"""Configuration of AV-HuBERT (Shi et al., "Learning Audio-Visual Speech Representation by Masked Multimodal
Cluster Prediction", ICLR 2022) and of its sequence-to-sequence lip-reading head.

Field names follow the original fairseq configs (`encoder_embed_dim`, `conv_pos`, `layer_norm_first`, ...), so a
checkpoint's `cfg` dict maps onto this class field by field. The defaults reproduce the released Base checkpoints
(the pretraining yaml overrides included: `layer_norm_first=True`, `audio_feat_dim=104`); `AVHubertConfig.large()`
gives the Large ones.
"""

from transformers import PretrainedConfig

# The ResNet-18 trunk of the video front end always has four stages (`trunk.layer1` .. `trunk.layer4`).
NUM_RESNET_STAGES = 4

ACTIVATIONS = ("gelu", "relu")
MODALITY_FUSIONS = ("concat", "add")
RESNET_RELU_TYPES = ("prelu", "relu")
MASKING_TYPES = ("input", "feature")

# Architecture of the released checkpoints (av_hubert conf/pretrain/*.yaml and conf/finetune/*.yaml).
BASE_ARCHITECTURE = dict(
    encoder_layers=12, encoder_embed_dim=768, encoder_ffn_embed_dim=3072, encoder_attention_heads=12,
    decoder_layers=6, decoder_embed_dim=768, decoder_ffn_embed_dim=3072, decoder_attention_heads=4,
)
LARGE_ARCHITECTURE = dict(
    encoder_layers=24, encoder_embed_dim=1024, encoder_ffn_embed_dim=4096, encoder_attention_heads=16,
    decoder_layers=9, decoder_embed_dim=1024, decoder_ffn_embed_dim=4096, decoder_attention_heads=8,
)


class AVHubertConfig(PretrainedConfig):
    r"""
    Configuration of [`AVHubertModel`] (the audio-visual encoder) and [`AVHubertForLipReading`] (encoder plus a
    transformer decoder over SentencePiece tokens). The defaults reproduce AV-HuBERT Base as released
    (`base_vox_iter5.pt`, `base_vox_433h.pt`); use `AVHubertConfig.large()` for the Large checkpoints.

    Encoder:
        encoder_layers (`int`, defaults to 12): number of transformer encoder layers.
        encoder_embed_dim (`int`, defaults to 768): width D of the encoder.
        encoder_ffn_embed_dim (`int`, defaults to 3072): inner width of the encoder feed-forward blocks.
        encoder_attention_heads (`int`, defaults to 12): attention heads per encoder layer (must divide D).
        activation_fn (`str`, defaults to `"gelu"`): encoder feed-forward activation, `"gelu"` (exact erf) or `"relu"`.
        layer_norm_first (`bool`, defaults to `True`): pre-LN layers with a final LayerNorm after the last layer
            (all released models). `False` gives fairseq's post-LN variant (LayerNorm after the positional conv).
        conv_pos (`int`, defaults to 128): kernel size of the convolutional positional embedding.
        conv_pos_groups (`int`, defaults to 16): groups of that convolution (must divide D).
        layer_norm_eps (`float`, defaults to 1e-5): epsilon of every LayerNorm.
        dropout (`float`, defaults to 0.1): dropout after attention / feed-forward blocks (training only).
        attention_dropout (`float`, defaults to 0.1): dropout on attention probabilities (training only).
        activation_dropout (`float`, defaults to 0.0): dropout after the feed-forward activation (training only).
        dropout_input (`float`, defaults to 0.0): dropout on the fused features before the encoder (training only).
        encoder_layerdrop (`float`, defaults to 0.0): probability of skipping an encoder layer (training only).

    Front ends and fusion:
        audio_feat_dim (`int`, defaults to 104): size of one audio frame: 26 log filterbanks stacked by 4 (25 Hz).
        modality_fuse (`str`, defaults to `"concat"`): `"concat"` (audio first, then video; 2D features, LayerNorm
            over 2D, then `post_extract_proj` to D) or `"add"` (sum, LayerNorm over D, no projection).
        resnet_relu_type (`str`, defaults to `"prelu"`): activation of the video ResNet, `"prelu"` or `"relu"`.
        video_frontend_channels (`int`, defaults to 64): output channels of the 3-D convolution stem.
        resnet_channels (`list[int]`, defaults to `[64, 128, 256, 512]`): channels of the four ResNet stages; the
            last one is the width of the per-frame video embedding.
        resnet_blocks (`list[int]`, defaults to `[2, 2, 2, 2]`): BasicBlocks per stage (ResNet-18).

    Pretraining-only parameters (unused by `forward`, kept so that checkpoints round-trip exactly):
        use_mask_embedding (`bool`, defaults to `False`): whether the model holds `mask_emb`.
        masking_type (`str`, defaults to `"input"`): `"input"` makes `mask_emb` of size `audio_feat_dim`,
            `"feature"` of size D.
        num_label_embeddings (`int`, defaults to 0): rows of `label_embs_concat` (cluster count + 4 specials);
            0 means the parameter is absent.
        final_dim (`int`, defaults to 256): width of `label_embs_concat` and of `final_proj`'s output.
        use_final_proj (`bool`, defaults to `False`): whether the model holds `final_proj` (pretrained checkpoints
            only; fine-tuned ones drop it).

    Lip-reading decoder ([`AVHubertForLipReading`] only):
        vocab_size (`int`, defaults to 1000): target vocabulary (the SentencePiece unigram-1000 model).
        decoder_layers (`int`, defaults to 6), decoder_embed_dim (`int`, defaults to 768),
        decoder_ffn_embed_dim (`int`, defaults to 3072), decoder_attention_heads (`int`, defaults to 4):
            size of the decoder (Large: 9 / 1024 / 4096 / 8).
        decoder_activation_fn (`str`, defaults to `"relu"`): feed-forward activation; the released seq2seq configs
            have no activation field, so fairseq falls back to ReLU.
        decoder_normalize_before (`bool`, defaults to `True`): pre-norm layers plus a final LayerNorm.
        decoder_dropout (`float`, defaults to 0.1), decoder_attention_dropout (`float`, defaults to 0.0),
        decoder_activation_dropout (`float`, defaults to 0.0), decoder_layerdrop (`float`, defaults to 0.0):
            training-time regularisation of the decoder.
        max_target_positions (`int`, defaults to 2048): longest target the decoder accepts.
        scale_embedding (`bool`, defaults to `False`): multiply token embeddings by sqrt(decoder_embed_dim)
            (fairseq `no_scale_embedding=True` means `False` here).
        share_decoder_input_output_embed (`bool`, defaults to `True`): the output projection is the token
            embedding matrix (no separate `embed_out`).
        pad_token_id (`int`, defaults to 1), bos_token_id (`int`, defaults to 0), eos_token_id (`int`, defaults to 2),
        unk_token_id (`int`, defaults to 3): special ids of the fairseq dictionary (== SentencePiece ids).
        decoder_start_token_id (`int`, defaults to 2): first decoder input; fairseq starts from eos, not bos.
    """

    model_type = "avhubert"
    attribute_map = {
        "hidden_size": "encoder_embed_dim",
        "num_hidden_layers": "encoder_layers",
        "num_attention_heads": "encoder_attention_heads",
        "intermediate_size": "encoder_ffn_embed_dim",
    }

    def __init__(
        self,
        encoder_layers=12,
        encoder_embed_dim=768,
        encoder_ffn_embed_dim=3072,
        encoder_attention_heads=12,
        activation_fn="gelu",
        layer_norm_first=True,
        conv_pos=128,
        conv_pos_groups=16,
        layer_norm_eps=1e-5,
        dropout=0.1,
        attention_dropout=0.1,
        activation_dropout=0.0,
        dropout_input=0.0,
        encoder_layerdrop=0.0,
        audio_feat_dim=104,
        modality_fuse="concat",
        resnet_relu_type="prelu",
        video_frontend_channels=64,
        resnet_channels=(64, 128, 256, 512),
        resnet_blocks=(2, 2, 2, 2),
        use_mask_embedding=False,
        masking_type="input",
        num_label_embeddings=0,
        final_dim=256,
        use_final_proj=False,
        vocab_size=1000,
        decoder_layers=6,
        decoder_embed_dim=768,
        decoder_ffn_embed_dim=3072,
        decoder_attention_heads=4,
        decoder_activation_fn="relu",
        decoder_normalize_before=True,
        decoder_dropout=0.1,
        decoder_attention_dropout=0.0,
        decoder_activation_dropout=0.0,
        decoder_layerdrop=0.0,
        max_target_positions=2048,
        scale_embedding=False,
        share_decoder_input_output_embed=True,
        pad_token_id=1,
        bos_token_id=0,
        eos_token_id=2,
        unk_token_id=3,
        decoder_start_token_id=2,
        **kwargs,
    ):
        self.encoder_layers = int(encoder_layers)
        self.encoder_embed_dim = int(encoder_embed_dim)
        self.encoder_ffn_embed_dim = int(encoder_ffn_embed_dim)
        self.encoder_attention_heads = int(encoder_attention_heads)
        self.activation_fn = str(activation_fn)
        self.layer_norm_first = bool(layer_norm_first)
        self.conv_pos = int(conv_pos)
        self.conv_pos_groups = int(conv_pos_groups)
        self.layer_norm_eps = float(layer_norm_eps)
        self.dropout = float(dropout)
        self.attention_dropout = float(attention_dropout)
        self.activation_dropout = float(activation_dropout)
        self.dropout_input = float(dropout_input)
        self.encoder_layerdrop = float(encoder_layerdrop)
        self.audio_feat_dim = int(audio_feat_dim)
        self.modality_fuse = str(modality_fuse)
        self.resnet_relu_type = str(resnet_relu_type)
        self.video_frontend_channels = int(video_frontend_channels)
        # JSON has no tuples: store lists so that a save/load round trip compares equal
        self.resnet_channels = [int(c) for c in resnet_channels]
        self.resnet_blocks = [int(n) for n in resnet_blocks]
        self.use_mask_embedding = bool(use_mask_embedding)
        self.masking_type = str(masking_type)
        self.num_label_embeddings = int(num_label_embeddings)
        self.final_dim = int(final_dim)
        self.use_final_proj = bool(use_final_proj)
        self.vocab_size = int(vocab_size)
        self.decoder_layers = int(decoder_layers)
        self.decoder_embed_dim = int(decoder_embed_dim)
        self.decoder_ffn_embed_dim = int(decoder_ffn_embed_dim)
        self.decoder_attention_heads = int(decoder_attention_heads)
        self.decoder_activation_fn = str(decoder_activation_fn)
        self.decoder_normalize_before = bool(decoder_normalize_before)
        self.decoder_dropout = float(decoder_dropout)
        self.decoder_attention_dropout = float(decoder_attention_dropout)
        self.decoder_activation_dropout = float(decoder_activation_dropout)
        self.decoder_layerdrop = float(decoder_layerdrop)
        self.max_target_positions = int(max_target_positions)
        self.scale_embedding = bool(scale_embedding)
        self.share_decoder_input_output_embed = bool(share_decoder_input_output_embed)
        self.unk_token_id = int(unk_token_id)
        self.decoder_start_token_id = int(decoder_start_token_id)
        self._validate(pad_token_id, bos_token_id, eos_token_id)
        super().__init__(pad_token_id=pad_token_id, bos_token_id=bos_token_id, eos_token_id=eos_token_id, **kwargs)

    def _validate(self, pad_token_id, bos_token_id, eos_token_id):
        positive = (
            "encoder_layers", "encoder_embed_dim", "encoder_ffn_embed_dim", "encoder_attention_heads", "conv_pos",
            "conv_pos_groups", "audio_feat_dim", "video_frontend_channels", "final_dim", "vocab_size",
            "decoder_layers", "decoder_embed_dim", "decoder_ffn_embed_dim", "decoder_attention_heads",
            "max_target_positions",
        )
        for name in positive:
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be a positive integer, got {getattr(self, name)}")
        if self.encoder_embed_dim % self.encoder_attention_heads:
            raise ValueError(
                f"encoder_embed_dim ({self.encoder_embed_dim}) must be divisible by encoder_attention_heads "
                f"({self.encoder_attention_heads})"
            )
        if self.decoder_embed_dim % self.decoder_attention_heads:
            raise ValueError(
                f"decoder_embed_dim ({self.decoder_embed_dim}) must be divisible by decoder_attention_heads "
                f"({self.decoder_attention_heads})"
            )
        if self.encoder_embed_dim % self.conv_pos_groups:
            raise ValueError(
                f"encoder_embed_dim ({self.encoder_embed_dim}) must be divisible by conv_pos_groups "
                f"({self.conv_pos_groups})"
            )
        choices = (
            ("activation_fn", ACTIVATIONS), ("decoder_activation_fn", ACTIVATIONS),
            ("modality_fuse", MODALITY_FUSIONS), ("resnet_relu_type", RESNET_RELU_TYPES),
            ("masking_type", MASKING_TYPES),
        )
        for name, allowed in choices:
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {getattr(self, name)!r}")
        for name in ("resnet_channels", "resnet_blocks"):
            values = getattr(self, name)
            if len(values) != NUM_RESNET_STAGES or min(values) < 1:
                raise ValueError(
                    f"{name} must list {NUM_RESNET_STAGES} positive integers (one per ResNet stage), got {values}"
                )
        if self.num_label_embeddings < 0:
            raise ValueError(f"num_label_embeddings must be >= 0, got {self.num_label_embeddings}")
        rates = (
            "dropout", "attention_dropout", "activation_dropout", "dropout_input", "encoder_layerdrop",
            "decoder_dropout", "decoder_attention_dropout", "decoder_activation_dropout", "decoder_layerdrop",
        )
        for name in rates:
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {getattr(self, name)}")
        if self.layer_norm_eps <= 0:
            raise ValueError(f"layer_norm_eps must be positive, got {self.layer_norm_eps}")
        special = {
            "pad_token_id": pad_token_id, "bos_token_id": bos_token_id, "eos_token_id": eos_token_id,
            "unk_token_id": self.unk_token_id, "decoder_start_token_id": self.decoder_start_token_id,
        }
        for name, value in special.items():
            if value is None or not 0 <= int(value) < self.vocab_size:
                raise ValueError(f"{name} must be a token id in [0, vocab_size={self.vocab_size}), got {value}")

    @property
    def fused_feature_dim(self) -> int:
        """Width of the fused audio-visual features before `post_extract_proj` (2D for concat, D for add)."""
        return 2 * self.encoder_embed_dim if self.modality_fuse == "concat" else self.encoder_embed_dim

    @property
    def video_embed_dim(self) -> int:
        """Width of the per-frame ResNet embedding fed to `feature_extractor_video.proj` (512 for ResNet-18)."""
        return self.resnet_channels[-1]

    @classmethod
    def base(cls, **overrides) -> "AVHubertConfig":
        """AV-HuBERT Base (12 x 768 encoder; 6 x 768 decoder with 4 heads)."""
        return cls(**{**BASE_ARCHITECTURE, **overrides})

    @classmethod
    def large(cls, **overrides) -> "AVHubertConfig":
        """AV-HuBERT Large (24 x 1024 encoder with 16 heads; 9 x 1024 decoder with 8 heads)."""
        return cls(**{**LARGE_ARCHITECTURE, **overrides})


__all__ = ["AVHubertConfig"]
