"""AV-HuBERT's sequence-to-sequence lip reader: the encoder of `modeling_avhubert.py` plus a Transformer decoder.

Written from the description of the original fairseq model (facebookresearch/av_hubert `decoder.py`, fairseq's
`TransformerDecoderLayer` and its sinusoidal positions). Module names follow the original checkpoints (see
`convert_avhubert_fairseq_checkpoint.py`).

Data flow of `AVHubertForLipReading` (B = batch, T = video frames, L = target tokens):

    video / audio_features --AVHubertModel--> (B, T, D) encoder states
    target tokens (B, L) --token embeddings + sinusoidal positions--> decoder layers (self-attention, attention
        over the encoder states, FFN) -> LayerNorm (pre-norm configs) -> output projection (the token embedding
        matrix unless the config unties them) -> (B, L, vocab) logits; `generate` runs beam search over them.
"""

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import initialization as init
from transformers.utils import ModelOutput

from .configuration_avhubert import AVHubertConfig
from .modeling_avhubert import (
    AVHubertAttention,
    AVHubertModel,
    AVHubertModelOutput,
    AVHubertPreTrainedModel,
    _activation,
)


@dataclass
class AVHubertLipReadingOutput(ModelOutput):
    """Output of [`AVHubertForLipReading`].

    Args:
        loss (`torch.FloatTensor` of shape `()`, *optional*, returned when `labels` are given):
            Label-smoothed cross-entropy averaged over non-padding target tokens.
        logits (`torch.FloatTensor` of shape `(batch, target_length, vocab_size)`):
            Teacher-forced next-token scores (before log-softmax).
        encoder_last_hidden_state (`torch.FloatTensor` of shape `(batch, frames, hidden_size)`):
            The encoder output the decoder attended to.
        encoder_padding_mask (`torch.BoolTensor` of shape `(batch, frames)`, *optional*): True at padded frames.
        encoder_hidden_states (`tuple(torch.FloatTensor)`, *optional*): per-layer encoder states (see
            [`AVHubertModelOutput`]).
    """

    loss: torch.FloatTensor | None = None
    logits: torch.FloatTensor | None = None
    encoder_last_hidden_state: torch.FloatTensor | None = None
    encoder_padding_mask: torch.BoolTensor | None = None
    encoder_hidden_states: tuple[torch.FloatTensor, ...] | None = None


@dataclass
class AVHubertGenerationOutput(ModelOutput):
    """Output of [`AVHubertForLipReading.generate`] with `return_dict_in_generate=True`.

    Args:
        sequences (`torch.LongTensor` of shape `(batch, length)`):
            Best hypothesis per input: the start token (eos, id 2), the tokens, a closing eos, then padding (id 1).
        sequences_scores (`torch.FloatTensor` of shape `(batch,)`):
            Sum of token log-probabilities (closing eos included) divided by `num_tokens ** length_penalty`.
    """

    sequences: torch.LongTensor | None = None
    sequences_scores: torch.FloatTensor | None = None


# ----------------------------------------------------------------------------------------------------------------
# Lip-reading decoder (av_hubert decoder.py + fairseq TransformerDecoderLayer) and the seq2seq model
# ----------------------------------------------------------------------------------------------------------------


def make_positions(input_ids: torch.Tensor, padding_idx: int) -> torch.Tensor:
    """fairseq position numbers: padding_idx + 1, + 2, ... for real tokens, padding_idx for padding tokens."""
    not_pad = input_ids.ne(padding_idx).long()
    return torch.cumsum(not_pad, dim=1) * not_pad + padding_idx


class AVHubertSinusoidalPositionalEmbedding(nn.Module):
    """fairseq's sinusoidal positions: [sin(p * f), cos(p * f)] concatenated (not interleaved),
    f_i = exp(-i * log(10000) / (half - 1)); the row of `padding_idx` is zero. Nothing is stored in the checkpoint."""

    def __init__(self, embed_dim: int, padding_idx: int):
        super().__init__()
        self.embed_dim = embed_dim
        self.padding_idx = padding_idx

    def forward(self, positions: torch.Tensor) -> torch.Tensor:
        half_dim = self.embed_dim // 2
        # same float32 arithmetic as fairseq's table, so the values are bit-identical
        scale = math.log(10000) / (half_dim - 1)
        frequencies = torch.exp(torch.arange(half_dim, dtype=torch.float, device=positions.device) * -scale)
        angles = positions.float().unsqueeze(-1) * frequencies  # (batch, length, half_dim)
        embeddings = torch.cat([torch.sin(angles), torch.cos(angles)], dim=-1)
        if self.embed_dim % 2:
            embeddings = F.pad(embeddings, (0, 1))
        return embeddings.masked_fill(positions.eq(self.padding_idx).unsqueeze(-1), 0.0)


class AVHubertDecoderLayer(nn.Module):
    """Decoder layer: causal self-attention, cross-attention to the encoder, ReLU feed-forward (pre-norm)."""

    def __init__(self, config: AVHubertConfig):
        super().__init__()
        dim = config.decoder_embed_dim
        self.normalize_before = config.decoder_normalize_before
        heads = config.decoder_attention_heads
        self.self_attn = AVHubertAttention(dim, heads, config.decoder_attention_dropout)
        self.self_attn_layer_norm = nn.LayerNorm(dim, eps=config.layer_norm_eps)
        self.encoder_attn = AVHubertAttention(
            dim, heads, config.decoder_attention_dropout, key_value_dim=config.encoder_embed_dim
        )
        self.encoder_attn_layer_norm = nn.LayerNorm(dim, eps=config.layer_norm_eps)
        self.fc1 = nn.Linear(dim, config.decoder_ffn_embed_dim)
        self.fc2 = nn.Linear(config.decoder_ffn_embed_dim, dim)
        self.final_layer_norm = nn.LayerNorm(dim, eps=config.layer_norm_eps)
        self.activation = _activation(config.decoder_activation_fn)
        self.dropout = nn.Dropout(config.decoder_dropout)
        self.activation_dropout = nn.Dropout(config.decoder_activation_dropout)

    def _residual(self, hidden_states, layer_norm, block):
        # pre-norm: x + block(LN(x)); post-norm: LN(x + block(x))
        if self.normalize_before:
            return hidden_states + self.dropout(block(layer_norm(hidden_states)))
        return layer_norm(hidden_states + self.dropout(block(hidden_states)))

    def forward(self, hidden_states, encoder_hidden_states, encoder_padding_mask=None, layer_cache=None):
        """`layer_cache` (dict or None): keys/values of earlier positions ("self") and of the encoder ("cross");
        updated in place when given."""
        caching = layer_cache is not None

        def self_attention(states):
            attended, present = self.self_attn(
                states, causal=True, past_key_value=layer_cache.get("self") if caching else None
            )
            if caching:
                layer_cache["self"] = present
            return attended

        def cross_attention(states):
            attended, present = self.encoder_attn(
                states,
                key_value_states=encoder_hidden_states,
                key_padding_mask=encoder_padding_mask,
                past_key_value=layer_cache.get("cross") if caching else None,
            )
            if caching:
                layer_cache["cross"] = present
            return attended

        def feed_forward(states):
            return self.fc2(self.activation_dropout(self.activation(self.fc1(states))))

        hidden_states = self._residual(hidden_states, self.self_attn_layer_norm, self_attention)
        hidden_states = self._residual(hidden_states, self.encoder_attn_layer_norm, cross_attention)
        return self._residual(hidden_states, self.final_layer_norm, feed_forward)


class AVHubertDecoder(nn.Module):
    """Transformer decoder over target tokens (`decoder.*` in fine-tuned checkpoints).

    Token embeddings (scale 1.0 unless `scale_embedding`) plus sinusoidal positions starting at padding_idx + 1 = 2,
    layers, a final LayerNorm (pre-norm configs), and an output projection that reuses the token embedding matrix.
    """

    def __init__(self, config: AVHubertConfig):
        super().__init__()
        dim = config.decoder_embed_dim
        self.padding_idx = config.pad_token_id
        self.max_target_positions = config.max_target_positions
        self.embed_scale = math.sqrt(dim) if config.scale_embedding else 1.0
        self.embed_tokens = nn.Embedding(config.vocab_size, dim, padding_idx=config.pad_token_id)
        self.embed_positions = AVHubertSinusoidalPositionalEmbedding(dim, config.pad_token_id)
        self.layers = nn.ModuleList([AVHubertDecoderLayer(config) for _ in range(config.decoder_layers)])
        self.layer_norm = nn.LayerNorm(dim, eps=config.layer_norm_eps) if config.decoder_normalize_before else None
        if config.share_decoder_input_output_embed:
            self.embed_out = None
        else:
            self.embed_out = nn.Parameter(torch.empty(config.vocab_size, dim))
        self.dropout = nn.Dropout(config.decoder_dropout)
        self.layerdrop = config.decoder_layerdrop

    def output_projection(self, hidden_states: torch.Tensor) -> torch.Tensor:
        weight = self.embed_tokens.weight if self.embed_out is None else self.embed_out
        return torch.matmul(hidden_states, weight.t())  # (batch, length, vocab_size)

    def forward(
        self,
        input_ids: torch.Tensor,
        encoder_hidden_states: torch.Tensor,
        encoder_padding_mask: torch.Tensor | None = None,
        cache: list[dict] | None = None,
    ) -> torch.Tensor:
        """Logits (batch, length, vocab_size) for `input_ids` (batch, length).

        Teacher forcing: pass the whole shifted target (positions follow fairseq's `make_positions`, so right
        padding is allowed). Incremental decoding: pass `cache` (a list with one dict per layer, initially empty
        dicts) and only the new tokens; the earlier tokens must contain no padding.
        """
        if cache is not None and cache[0].get("self") is not None:
            past_length = cache[0]["self"][0].shape[2]
            steps = torch.arange(1, input_ids.shape[1] + 1, device=input_ids.device)
            positions = (self.padding_idx + past_length + steps).unsqueeze(0).expand(input_ids.shape[0], -1)
        else:
            positions = make_positions(input_ids, self.padding_idx)
        if int(positions.max()) > self.max_target_positions + self.padding_idx:
            raise ValueError(
                f"target of {int(positions.max()) - self.padding_idx} tokens exceeds max_target_positions="
                f"{self.max_target_positions}"
            )
        hidden_states = self.embed_scale * self.embed_tokens(input_ids) + self.embed_positions(positions)
        hidden_states = self.dropout(hidden_states)
        for index, layer in enumerate(self.layers):
            if self.training and self.layerdrop > 0 and torch.rand(()).item() < self.layerdrop:
                continue
            hidden_states = layer(
                hidden_states,
                encoder_hidden_states,
                encoder_padding_mask,
                layer_cache=cache[index] if cache is not None else None,
            )
        if self.layer_norm is not None:
            hidden_states = self.layer_norm(hidden_states)
        return self.output_projection(hidden_states)


def shift_tokens_right(labels: torch.Tensor, pad_token_id: int, decoder_start_token_id: int) -> torch.Tensor:
    """Decoder inputs from targets: [start, t0, ..., t_{n-2}] (fairseq moves the final eos to the front)."""
    decoder_input_ids = labels.new_full(labels.shape, pad_token_id)
    decoder_input_ids[:, 1:] = labels[:, :-1]
    decoder_input_ids[:, 0] = decoder_start_token_id
    return decoder_input_ids.masked_fill(decoder_input_ids.eq(-100), pad_token_id)


def label_smoothed_cross_entropy(logits: torch.Tensor, targets: torch.Tensor, epsilon: float = 0.1,
                                 ignore_index: int = 1, reduction: str = "sum") -> tuple[torch.Tensor, torch.Tensor]:
    """fairseq's label-smoothed cross-entropy: (loss, nll_loss).

    Per target token with log-probabilities logp over V classes:
        loss = (1 - eps - eps_i) * (-logp[target]) + eps_i * sum_v(-logp[v]),   eps_i = eps / (V - 1)
    eps = 0 is plain NLL. Tokens equal to `ignore_index` (pad, 1) or -100 contribute 0. `reduction="sum"` sums over
    the remaining tokens (fairseq with reduce=True, as TalkLip's lip-reading loss uses it); `"mean"` divides by their
    count (the lip-reading head's `loss`).

    Args:
        logits: (..., V) unnormalised scores; targets: (...) token ids.
    """
    if reduction not in ("sum", "mean"):
        raise ValueError(f"reduction must be one of ('sum', 'mean'), got {reduction!r}")
    if not 0.0 <= epsilon < 1.0:
        raise ValueError(f"epsilon (label smoothing) must be in [0, 1), got {epsilon}")
    log_probs = F.log_softmax(logits.float(), dim=-1)
    ignored = targets.eq(ignore_index) | targets.eq(-100)
    safe_targets = targets.masked_fill(ignored, 0).long()
    nll = -log_probs.gather(-1, safe_targets.unsqueeze(-1)).squeeze(-1)
    smooth = -log_probs.sum(dim=-1)
    eps_i = epsilon / (log_probs.shape[-1] - 1)
    loss = (1.0 - epsilon - eps_i) * nll + eps_i * smooth
    loss, nll = loss.masked_fill(ignored, 0.0).sum(), nll.masked_fill(ignored, 0.0).sum()
    if reduction == "mean":
        count = (~ignored).sum().clamp(min=1)
        loss, nll = loss / count, nll / count
    return loss, nll


class AVHubertForLipReading(AVHubertPreTrainedModel):
    """AV-HuBERT encoder + transformer decoder: transcribes lip movements (and/or audio) into SentencePiece tokens.

    `forward` gives teacher-forced logits (and a loss with `labels`); `generate` decodes with fairseq's beam search.
    The encoder is `self.avhubert` (an [`AVHubertModel`]); `AVHubertModel.from_pretrained` on a lip-reading folder
    loads just that encoder.
    """

    @classmethod
    def card_variants(cls):
        # the rows of the model card's parameter table (talkface.hub.cards)
        return [
            ("Base, lip reader (encoder + decoder)", AVHubertConfig.base()),
            ("Large, lip reader (encoder + decoder)", AVHubertConfig.large()),
        ]

    def __init__(self, config: AVHubertConfig):
        super().__init__(config)
        self.avhubert = AVHubertModel(config)
        self.decoder = AVHubertDecoder(config)
        self.post_init()

    @torch.no_grad()
    def _init_weights(self, module):
        super()._init_weights(module)
        if isinstance(module, AVHubertDecoder) and module.embed_out is not None:
            init.normal_(module.embed_out, mean=0.0, std=module.embed_out.shape[1] ** -0.5)

    def get_encoder(self) -> AVHubertModel:
        return self.avhubert

    def get_input_embeddings(self) -> nn.Embedding:
        return self.decoder.embed_tokens

    def forward(
        self,
        audio_features: torch.Tensor | None = None,
        video: torch.Tensor | None = None,
        padding_mask: torch.Tensor | None = None,
        decoder_input_ids: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        encoder_outputs: AVHubertModelOutput | None = None,
        label_smoothing: float = 0.0,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> AVHubertLipReadingOutput | tuple:
        """Teacher-forced decoding.

        Args:
            audio_features, video, padding_mask: encoder inputs (see [`AVHubertModel.forward`]); not needed when
                `encoder_outputs` is given.
            decoder_input_ids: (batch, target_length), starting with `decoder_start_token_id` (2). Built from
                `labels` (shifted right) when omitted.
            labels: (batch, target_length) targets ending with eos (2), padded with pad (1) or -100.
            label_smoothing: epsilon of fairseq's label-smoothed cross-entropy (0.1 in the av_hubert recipes).
        """
        if kwargs:
            raise TypeError(f"AVHubertForLipReading.forward got unexpected arguments {sorted(kwargs)}")
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        if decoder_input_ids is None:
            if labels is None:
                raise ValueError("pass decoder_input_ids or labels (to build decoder inputs by shifting right)")
            decoder_input_ids = shift_tokens_right(
                labels, self.config.pad_token_id, self.config.decoder_start_token_id
            )
        if encoder_outputs is None:
            encoder_outputs = self.avhubert(
                audio_features=audio_features,
                video=video,
                padding_mask=padding_mask,
                output_hidden_states=output_hidden_states,
                return_dict=True,
            )
        logits = self.decoder(decoder_input_ids, encoder_outputs.last_hidden_state, encoder_outputs.padding_mask)
        loss = None
        if labels is not None:
            loss, _ = label_smoothed_cross_entropy(logits, labels, label_smoothing, self.config.pad_token_id,
                                                  reduction="mean")
        output = AVHubertLipReadingOutput(
            loss=loss,
            logits=logits,
            encoder_last_hidden_state=encoder_outputs.last_hidden_state,
            encoder_padding_mask=encoder_outputs.padding_mask,
            encoder_hidden_states=encoder_outputs.hidden_states,
        )
        return output if return_dict else output.to_tuple()

    # -- generation -------------------------------------------------------------------------------------------------

    def reference_max_length(self, audio_features=None, video=None, padding_mask=None, max_len_a=1.0, max_len_b=0):
        """Length cap of av_hubert's sequence generator: min(int(a * src_len + b), max_target_positions - 1).

        av_hubert reads `src_len` from the audio tensor's second axis whenever audio is given, i.e. the feature
        size (104), not the number of frames; for video-only input it is the number of frames. Reproduced as is,
        so audio(-visual) decoding is capped at 104 tokens with the default a=1, b=0.
        """
        if audio_features is not None:
            source_length = audio_features.shape[1]
        elif padding_mask is not None:
            source_length = padding_mask.shape[1]
        else:
            source_length = video.shape[2]
        return min(int(max_len_a * source_length + max_len_b), self.config.max_target_positions - 1)

    def _decoder_log_probs(self, tokens, encoder_hidden_states, encoder_padding_mask, cache):
        logits = self.decoder(tokens, encoder_hidden_states, encoder_padding_mask, cache=cache)[:, -1, :]
        return F.log_softmax(logits.float(), dim=-1)  # (rows, vocab_size)

    def _mask_log_probs(self, log_probs, step, max_length, min_length, unk_penalty):
        config = self.config
        log_probs[log_probs != log_probs] = -math.inf  # NaN -> -inf
        log_probs[:, config.pad_token_id] = -math.inf  # never emit padding
        log_probs[:, config.unk_token_id] -= unk_penalty
        if step >= max_length:  # only eos is allowed at the last step
            eos_log_prob = log_probs[:, config.eos_token_id].clone()
            log_probs[:] = -math.inf
            log_probs[:, config.eos_token_id] = eos_log_prob
        elif step < min_length:
            log_probs[:, config.eos_token_id] = -math.inf
        return log_probs

    @staticmethod
    def _reorder_cache(cache, order):
        # Only the self-attention cache needs reordering: beams are only ever reordered within one input, and
        # the cross-attention keys/values are identical for all beams of an input.
        for layer_cache in cache:
            key, value = layer_cache["self"]
            layer_cache["self"] = (key.index_select(0, order), value.index_select(0, order))

    @torch.no_grad()
    def generate(
        self,
        audio_features: torch.Tensor | None = None,
        video: torch.Tensor | None = None,
        padding_mask: torch.Tensor | None = None,
        num_beams: int = 50,
        max_len_a: float = 1.0,
        max_len_b: int = 0,
        max_new_tokens: int | None = None,
        min_length: int = 1,
        length_penalty: float = 1.0,
        unk_penalty: float = 0.0,
        normalize_scores: bool = True,
        return_dict_in_generate: bool = False,
    ) -> torch.LongTensor | AVHubertGenerationOutput:
        """Decode token ids with av_hubert's beam search (defaults = its `s2s_decode.yaml`: beam 50, lenpen 1).

        The maximum number of tokens follows the reference rule (see `reference_max_length`: 104 whenever audio is
        given, else the number of frames) unless `max_new_tokens` is set. `num_beams=1` is greedy decoding.

        Returns (batch, length) ids: the start token (2), the hypothesis, eos (2), then padding (1); or an
        [`AVHubertGenerationOutput`] with the normalised scores when `return_dict_in_generate`.
        """
        config = self.config
        if max_new_tokens is None:
            max_length = self.reference_max_length(audio_features, video, padding_mask, max_len_a, max_len_b)
        else:
            max_length = min(int(max_new_tokens), config.max_target_positions - 1)
        if not 1 <= min_length <= max_length:
            raise ValueError(f"min_length ({min_length}) must be in 1..max length ({max_length})")
        if num_beams < 1:
            raise ValueError(f"num_beams must be >= 1, got {num_beams}")
        encoder_outputs = self.avhubert(audio_features=audio_features, video=video, padding_mask=padding_mask)
        memory, memory_padding_mask = encoder_outputs.last_hidden_state, encoder_outputs.padding_mask
        if num_beams == 1:
            hypotheses = self._greedy_search(memory, memory_padding_mask, max_length, min_length, unk_penalty,
                                             length_penalty, normalize_scores)
        else:
            hypotheses = self._beam_search(memory, memory_padding_mask, num_beams, max_length, min_length,
                                           unk_penalty, length_penalty, normalize_scores)
        longest = max(len(tokens) for tokens, _ in hypotheses)
        sequences = memory.new_full((len(hypotheses), longest + 1), config.pad_token_id, dtype=torch.long)
        sequences[:, 0] = config.decoder_start_token_id
        for row, (tokens, _) in enumerate(hypotheses):
            sequences[row, 1 : len(tokens) + 1] = torch.tensor(tokens, dtype=torch.long, device=sequences.device)
        if not return_dict_in_generate:
            return sequences
        scores = torch.tensor([score for _, score in hypotheses], dtype=torch.float, device=sequences.device)
        return AVHubertGenerationOutput(sequences=sequences, sequences_scores=scores)

    def _greedy_search(self, memory, memory_padding_mask, max_length, min_length, unk_penalty, length_penalty,
                       normalize_scores):
        """Arg-max decoding; each hypothesis stops at its first eos (forced at step `max_length`)."""
        config = self.config
        batch_size = memory.shape[0]
        cache = [{} for _ in self.decoder.layers]
        tokens = memory.new_full((batch_size, 1), config.decoder_start_token_id, dtype=torch.long)
        total = memory.new_zeros(batch_size, dtype=torch.float)
        results = [None] * batch_size
        for step in range(max_length + 1):
            log_probs = self._decoder_log_probs(tokens[:, -1:], memory, memory_padding_mask, cache)
            log_probs = self._mask_log_probs(log_probs, step, max_length, min_length, unk_penalty)
            best_log_prob, best_token = log_probs.max(dim=-1)
            total = total + best_log_prob
            for row in range(batch_size):
                if results[row] is None and int(best_token[row]) == config.eos_token_id:
                    hypothesis = tokens[row, 1:].tolist() + [config.eos_token_id]
                    score = float(total[row]) / ((step + 1) ** length_penalty if normalize_scores else 1.0)
                    results[row] = (hypothesis, score)
            if all(result is not None for result in results):
                break
            tokens = torch.cat([tokens, best_token[:, None]], dim=1)
        return results

    def _beam_search(self, memory, memory_padding_mask, beam_size, max_length, min_length, unk_penalty,
                     length_penalty, normalize_scores):
        """fairseq's `SequenceGenerator` beam search (single model, no prefix, no LM), batched.

        Each step takes the 2 * beam best (beam, token) extensions; those ending in eos among the first `beam`
        candidates are finalised with score / num_tokens ** length_penalty, and the best `beam` others continue.
        An input is done once it has `beam` finalised hypotheses (or at `max_length`); the best one is returned.
        Finished inputs keep running in the batch but can no longer finalise anything.
        """
        config = self.config
        eos = config.eos_token_id
        vocab_size = config.vocab_size
        beam_size = min(beam_size, vocab_size - 1)  # pad is never selected
        batch_size, device = memory.shape[0], memory.device
        rows = torch.arange(batch_size, device=device).repeat_interleave(beam_size)
        memory = memory.index_select(0, rows)  # (batch * beam, frames, hidden_size)
        if memory_padding_mask is not None:
            memory_padding_mask = memory_padding_mask.index_select(0, rows)

        tokens = torch.full((batch_size * beam_size, max_length + 2), config.pad_token_id, dtype=torch.long,
                            device=device)
        tokens[:, 0] = config.decoder_start_token_id
        scores = torch.zeros(batch_size * beam_size, max_length + 1, device=device)  # cumulative log-probs
        finalized = [[] for _ in range(batch_size)]
        finished = [False] * batch_size
        cands_to_ignore = torch.zeros(batch_size, beam_size, dtype=torch.bool, device=device)
        beam_offsets = (torch.arange(batch_size, device=device) * beam_size).unsqueeze(1)  # (batch, 1)
        cache = [{} for _ in self.decoder.layers]

        for step in range(max_length + 1):
            log_probs = self._decoder_log_probs(tokens[:, step : step + 1], memory, memory_padding_mask, cache)
            log_probs = self._mask_log_probs(log_probs, step, max_length, min_length, unk_penalty)
            log_probs = log_probs.view(batch_size, beam_size, vocab_size)
            if step == 0:
                candidates = log_probs[:, :1, :]  # all beams are identical at the first step
            else:
                candidates = log_probs + scores.view(batch_size, beam_size, -1)[:, :, step - 1].unsqueeze(-1)
            candidates = candidates.reshape(batch_size, -1)
            num_candidates = min(2 * beam_size, candidates.shape[1] - 1)
            cand_scores, cand_flat = candidates.topk(num_candidates, dim=1)
            cand_beams = torch.div(cand_flat, vocab_size, rounding_mode="floor")
            cand_tokens = cand_flat % vocab_size
            cand_rows = cand_beams + beam_offsets  # (batch, candidates) index into batch * beam rows

            eos_mask = cand_tokens.eq(eos) & cand_scores.ne(-math.inf)
            eos_mask[:, :beam_size][cands_to_ignore] = False
            finalize_mask = eos_mask[:, :beam_size].clone()
            finalize_mask[torch.tensor(finished, device=device)] = False
            newly_seen = set()
            for batch_index, cand_index in finalize_mask.nonzero().tolist():
                newly_seen.add(batch_index)
                if len(finalized[batch_index]) >= beam_size:
                    continue
                row = int(cand_rows[batch_index, cand_index])
                hypothesis = tokens[row, 1 : step + 1].tolist() + [eos]
                score = float(cand_scores[batch_index, cand_index])
                if normalize_scores:
                    score /= (step + 1) ** length_penalty
                finalized[batch_index].append((hypothesis, score))
            for batch_index in newly_seen:
                if len(finalized[batch_index]) == beam_size or step == max_length:
                    finished[batch_index] = True
            if all(finished) or step >= max_length:
                break

            # continue with the best `beam` candidates that do not end in eos
            eos_mask[:, :beam_size] |= cands_to_ignore
            order_key = eos_mask.long() * num_candidates + torch.arange(num_candidates, device=device)
            selected_key, active = order_key.topk(beam_size, dim=1, largest=False)
            cands_to_ignore = selected_key.ge(num_candidates)
            active_rows = cand_rows.gather(1, active).view(-1)
            tokens[:, : step + 1] = tokens.index_select(0, active_rows)[:, : step + 1]
            tokens.view(batch_size, beam_size, -1)[:, :, step + 1] = cand_tokens.gather(1, active)
            if step > 0:
                scores[:, :step] = scores.index_select(0, active_rows)[:, :step]
            scores.view(batch_size, beam_size, -1)[:, :, step] = cand_scores.gather(1, active)
            self._reorder_cache(cache, active_rows)

        results = []
        for hypotheses in finalized:
            best = max(hypotheses, key=lambda item: item[1]) if hypotheses else ([eos], float("-inf"))
            results.append(best)
        return results


__all__ = ["AVHubertForLipReading", "AVHubertLipReadingOutput", "AVHubertGenerationOutput"]
