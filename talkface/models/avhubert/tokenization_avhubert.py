"""The SentencePiece tokenizer of the AV-HuBERT lip readers.

Every fine-tuned AV-HuBERT checkpoint carries its tokenizer inside `task_state['s2s_tokenizer']` (a SentencePiece
unigram model with 1000 pieces, trained on lower-cased LRS3 text). In that model the piece id *is* the fairseq
dictionary index (bos 0, pad 1, eos 2, unk 3), so token ids go straight into the decoder.

Encoding follows the reference label encoder: lower-case, SentencePiece pieces, ids, then eos appended.
Decoding drops bos/pad/eos, joins the pieces and turns the word-boundary mark "\u2581" back into spaces.
"""

import json
import os
from pathlib import Path

import torch

from ...errors import ModelLoadError
from ...utils.imports import require

TOKENIZER_MODEL_FILE = "tokenizer.model"
TOKENIZER_CONFIG_FILE = "tokenizer_config.json"
WORD_BOUNDARY = "\u2581"

# special ids of the fairseq target dictionary; the SentencePiece model must agree
EXPECTED_SPECIAL_IDS = {"bos": 0, "pad": 1, "eos": 2, "unk": 3}


class AVHubertTokenizer:
    """Text <-> token ids for [`AVHubertForLipReading`].

    Args:
        model_proto (`bytes`): the serialized SentencePiece model (the content of a `.model` file).
        lowercase (`bool`, defaults to `True`): lower-case text before encoding, as the reference does.
    """

    model_file_name = TOKENIZER_MODEL_FILE

    def __init__(self, model_proto: bytes, lowercase: bool = True):
        spm = require("sentencepiece")
        self.model_proto = bytes(model_proto)
        self.lowercase = bool(lowercase)
        self.sp_model = spm.SentencePieceProcessor()
        try:
            self.sp_model.LoadFromSerializedProto(self.model_proto)
        except RuntimeError as err:
            raise ModelLoadError(f"not a SentencePiece model ({err}); pass the tokenizer .model file") from err
        found = {
            "bos": self.sp_model.bos_id(), "pad": self.sp_model.pad_id(),
            "eos": self.sp_model.eos_id(), "unk": self.sp_model.unk_id(),
        }
        if found != EXPECTED_SPECIAL_IDS:
            raise ModelLoadError(
                f"the SentencePiece model has special ids {found}, but AV-HuBERT's dictionary uses "
                f"{EXPECTED_SPECIAL_IDS}; use the tokenizer that came with the checkpoint"
            )

    # -- construction / persistence ---------------------------------------------------------------------------------

    @classmethod
    def from_model_file(cls, path, **kwargs) -> "AVHubertTokenizer":
        path = Path(path)
        if not path.is_file():
            raise ModelLoadError(f"tokenizer model not found: {path}; pass a SentencePiece .model file")
        return cls(path.read_bytes(), **kwargs)

    @classmethod
    def from_pretrained(cls, path_or_repo_id, **hub_kwargs) -> "AVHubertTokenizer":
        """Load from a folder written by `save_pretrained` (or a Hub repository holding one)."""
        from ...utils.sources import resolve_source

        source = resolve_source(path_or_repo_id, what="AV-HuBERT tokenizer folder")
        if source.is_local:
            folder = source.path
            model_path, config_path = folder / TOKENIZER_MODEL_FILE, folder / TOKENIZER_CONFIG_FILE
            if not model_path.is_file():
                raise ModelLoadError(
                    f"{folder} has no {TOKENIZER_MODEL_FILE}; is it an AV-HuBERT lip-reading model folder?"
                )
        else:
            from huggingface_hub import hf_hub_download

            try:
                model_path = Path(hf_hub_download(source.location, TOKENIZER_MODEL_FILE, **hub_kwargs))
                config_path = Path(hf_hub_download(source.location, TOKENIZER_CONFIG_FILE, **hub_kwargs))
            except Exception as err:  # the hub raises many error types; all mean "cannot get the files"
                raise ModelLoadError(
                    f"cannot load an AV-HuBERT tokenizer from {path_or_repo_id!r} ({type(err).__name__}); "
                    "pass a local model folder or a Hub id that holds tokenizer.model"
                ) from err
        options = json.loads(config_path.read_text()) if config_path.is_file() else {}
        return cls(model_path.read_bytes(), lowercase=options.get("lowercase", True))

    def save_pretrained(self, save_directory) -> tuple[str, str]:
        save_directory = Path(save_directory)
        save_directory.mkdir(parents=True, exist_ok=True)
        model_path = save_directory / TOKENIZER_MODEL_FILE
        config_path = save_directory / TOKENIZER_CONFIG_FILE
        model_path.write_bytes(self.model_proto)
        config = {
            "tokenizer_class": type(self).__name__,
            "lowercase": self.lowercase,
            "bos_token_id": self.bos_token_id, "pad_token_id": self.pad_token_id,
            "eos_token_id": self.eos_token_id, "unk_token_id": self.unk_token_id,
            "vocab_size": self.vocab_size,
        }
        config_path.write_text(json.dumps(config, indent=2) + "\n")
        return os.fspath(model_path), os.fspath(config_path)

    # -- vocabulary -------------------------------------------------------------------------------------------------

    @property
    def vocab_size(self) -> int:
        return self.sp_model.get_piece_size()

    def __len__(self) -> int:
        return self.vocab_size

    bos_token_id = property(lambda self: EXPECTED_SPECIAL_IDS["bos"])
    pad_token_id = property(lambda self: EXPECTED_SPECIAL_IDS["pad"])
    eos_token_id = property(lambda self: EXPECTED_SPECIAL_IDS["eos"])
    unk_token_id = property(lambda self: EXPECTED_SPECIAL_IDS["unk"])

    @property
    def all_special_ids(self) -> list[int]:
        return sorted(EXPECTED_SPECIAL_IDS.values())

    def id_to_piece(self, token_id: int) -> str:
        return self.sp_model.id_to_piece(int(token_id))

    # -- encoding ---------------------------------------------------------------------------------------------------

    def normalize(self, text: str) -> str:
        return text.lower() if self.lowercase else text

    def tokenize(self, text: str) -> list[str]:
        """SentencePiece pieces of the (lower-cased) text."""
        return list(self.sp_model.EncodeAsPieces(self.normalize(text)))

    def encode(self, text: str, add_eos: bool = True) -> list[int]:
        """Token ids of `text`, eos appended (the decoder's training targets)."""
        ids = [self.sp_model.piece_to_id(piece) for piece in self.tokenize(text)]
        return ids + [self.eos_token_id] if add_eos else ids

    def __call__(self, texts, add_eos: bool = True, return_tensors: str | None = None) -> dict:
        """Encode one text or a list; with `return_tensors="pt"` the ids are right-padded with pad (1)."""
        single = isinstance(texts, str)
        encoded = [self.encode(text, add_eos=add_eos) for text in ([texts] if single else texts)]
        if return_tensors is None:
            return {"input_ids": encoded[0] if single else encoded}
        if return_tensors != "pt":
            raise ValueError(f"return_tensors must be None or 'pt', got {return_tensors!r}")
        longest = max(len(ids) for ids in encoded)
        input_ids = torch.full((len(encoded), longest), self.pad_token_id, dtype=torch.long)
        for row, ids in enumerate(encoded):
            input_ids[row, : len(ids)] = torch.tensor(ids, dtype=torch.long)
        return {"input_ids": input_ids, "attention_mask": input_ids.ne(self.pad_token_id).long()}

    # -- decoding ---------------------------------------------------------------------------------------------------

    def convert_ids_to_tokens(self, ids, skip_special_tokens: bool = True) -> list[str]:
        if isinstance(ids, torch.Tensor):
            ids = ids.tolist()
        skipped = {self.bos_token_id, self.pad_token_id, self.eos_token_id} if skip_special_tokens else set()
        # unk is kept (as "<unk>") like the reference's Dictionary.string
        return [self.id_to_piece(i) for i in ids if int(i) not in skipped]

    def decode(self, ids, skip_special_tokens: bool = True) -> str:
        """Text of a token id sequence (e.g. one row of `generate`'s output)."""
        pieces = self.convert_ids_to_tokens(ids, skip_special_tokens=skip_special_tokens)
        return "".join(pieces).replace(WORD_BOUNDARY, " ").strip()

    def batch_decode(self, sequences, skip_special_tokens: bool = True) -> list[str]:
        if isinstance(sequences, torch.Tensor):
            sequences = sequences.tolist()
        return [self.decode(ids, skip_special_tokens=skip_special_tokens) for ids in sequences]

    def __repr__(self) -> str:
        return f"{type(self).__name__}(vocab_size={self.vocab_size}, lowercase={self.lowercase})"


__all__ = ["AVHubertTokenizer"]
