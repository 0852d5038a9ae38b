"""Loading, training and shipping the tokenizer a prep run encodes with.

Three ways in (``TokenizerSpec``): a local folder or tokenizer.json, an HF model name (fetched
only when the hub is reachable), or a byte-level BPE trained during prep (tiny runs). Encoding
always uses the fast ``tokenizers`` library; special tokens (BOS, EOD) are added by prep itself,
never by the tokenizer's post-processor, so what lands in the .bin is exactly what the config
says. The tokenizer files are copied into the output (``tokenizer/``) so later stages train and
generate with the very same vocabulary.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nemotron.config.prep import TokenizerSpec, TokenizerTrainSpec
from nemotron.data.fingerprint import TOKENIZER_FILES, sha256_file
from nemotron.data.locate import resolve_path
from nemotron.errors import UserError

EOD_FALLBACKS = ("<|endoftext|>", "</s>", "<eos>")


@dataclass
class LoadedTokenizer:
    """A tokenizer ready to encode, plus what identifies it."""

    json_path: Path
    config: dict[str, Any]
    files: dict[str, Path]  # name in the output folder -> source file
    source: str
    sha256: str  # over the tokenizer files' contents
    own_chat_template: str | None = None
    _tok: Any = field(default=None, repr=False)

    @property
    def tokenizer(self) -> Any:
        if self._tok is None:
            from tokenizers import Tokenizer

            self._tok = Tokenizer.from_file(str(self.json_path))
        return self._tok

    @property
    def vocab_size(self) -> int:
        return int(self.tokenizer.get_vocab_size(with_added_tokens=True))

    def token_id(self, token: str, what: str) -> int:
        token_id = self.tokenizer.token_to_id(token)
        if token_id is None:
            raise UserError(
                f"{what} {token!r} is not in the tokenizer's vocabulary ({self.source})",
                hint=f"set tokenizer.{what.replace(' ', '_')} to a token the tokenizer has",
            )
        return int(token_id)

    def special(self, name: str) -> str | None:
        """A special token named in tokenizer_config.json (``eos_token``, ``bos_token``...)."""
        value = self.config.get(name)
        if isinstance(value, dict):
            value = value.get("content")
        return value if isinstance(value, str) and value else None

    def eod(self, spec: TokenizerSpec) -> tuple[str, int]:
        if spec.eod_token:
            return spec.eod_token, self.token_id(spec.eod_token, "eod token")
        candidates = [self.special("eos_token"), *EOD_FALLBACKS]
        for token in candidates:
            if token and self.tokenizer.token_to_id(token) is not None:
                return token, int(self.tokenizer.token_to_id(token))
        raise UserError(
            f"cannot tell which token ends a document for tokenizer {self.source}",
            hint="set tokenizer.eod_token (e.g. '</s>' or '<|endoftext|>')",
        )

    def bos(self, spec: TokenizerSpec) -> tuple[str, int]:
        token = spec.bos_token or self.special("bos_token")
        if not token:
            raise UserError(
                f"add_bos is on but tokenizer {self.source} names no BOS token",
                hint="set tokenizer.bos_token, or add_bos=false",
            )
        return token, self.token_id(token, "bos token")

    def identity(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "sha256": self.sha256,
            "files": {name: sha256_file(path) for name, path in sorted(self.files.items())},
            "vocab_size": self.vocab_size,
        }

    def copy_to(self, dest: Path, chat_template: str | None = None) -> None:
        """Write the tokenizer files (and the chat template used, if any) into ``dest``."""
        from nemotron.data.engine import atomic_write_bytes

        dest.mkdir(parents=True, exist_ok=True)
        for name, path in sorted(self.files.items()):
            atomic_write_bytes(dest / name, path.read_bytes())
        if chat_template is not None:
            atomic_write_bytes(dest / "chat_template.jinja", chat_template.encode("utf-8"))


def _read_config(root: Path | None) -> dict[str, Any]:
    if root is None or not (root / "tokenizer_config.json").is_file():
        return {}
    try:
        return json.loads((root / "tokenizer_config.json").read_text(encoding="utf-8"))
    except ValueError as exc:
        raise UserError(f"{root / 'tokenizer_config.json'} is not valid JSON: {exc}") from exc


def _own_template(root: Path | None, config: dict[str, Any]) -> str | None:
    if root is not None and (root / "chat_template.jinja").is_file():
        return (root / "chat_template.jinja").read_text(encoding="utf-8")
    template = config.get("chat_template")
    if isinstance(template, list):  # [{"name": "default", "template": "..."}, ...]
        named = {t.get("name"): t.get("template") for t in template if isinstance(t, dict)}
        template = named.get("default")
    return template if isinstance(template, str) and template else None


def _from_folder(root: Path, source: str, scratch: Path) -> LoadedTokenizer:
    files = {name: root / name for name in TOKENIZER_FILES if (root / name).is_file()}
    files.pop("tokenizer.model", None)  # the fast tokenizer.json is what we use and ship
    if "tokenizer.json" not in files:
        files["tokenizer.json"] = _convert_slow(root, scratch)
    config = _read_config(root)
    return LoadedTokenizer(
        json_path=files["tokenizer.json"],
        config=config,
        files=files,
        source=source,
        sha256=_digest(files),
        own_chat_template=_own_template(root, config),
    )


def _convert_slow(root: Path, scratch: Path) -> Path:
    """A folder without tokenizer.json: let transformers build the fast tokenizer, offline."""
    try:
        from transformers import AutoTokenizer

        hf_tok = AutoTokenizer.from_pretrained(str(root), local_files_only=True)
        backend = hf_tok.backend_tokenizer
    except Exception as exc:  # any loading failure is a problem with the user's folder
        raise UserError(
            f"{root} has no tokenizer.json and transformers could not load it: {exc}",
            hint="point tokenizer.path at a folder with tokenizer.json (a fast tokenizer)",
        ) from exc
    scratch.mkdir(parents=True, exist_ok=True)
    out = scratch / "tokenizer.json"
    backend.save(str(out))
    return out


def _digest(files: dict[str, Path]) -> str:
    digest = hashlib.sha256()
    for name, path in sorted(files.items()):
        digest.update(name.encode() + b"\0" + sha256_file(path).encode() + b"\0")
    return digest.hexdigest()


def load_tokenizer(
    spec: TokenizerSpec,
    scratch: Path,
    training_texts: Callable[[TokenizerTrainSpec], Iterable[str]] | None = None,
) -> LoadedTokenizer:
    """Resolve ``spec`` to a loaded tokenizer; ``scratch`` holds converted or trained files."""
    if spec.path is not None:
        path = resolve_path(spec.path, "tokenizer.path")
        if path.is_dir():
            return _from_folder(path, str(spec.path), scratch / "converted")
        files = {"tokenizer.json": path}
        config = _read_config(path.parent) if path.name == "tokenizer.json" else {}
        if path.name == "tokenizer.json":
            for name in ("tokenizer_config.json", "special_tokens_map.json"):
                if (path.parent / name).is_file():
                    files[name] = path.parent / name
        return LoadedTokenizer(path, config, files, str(spec.path), _digest(files))
    if spec.hf is not None:
        return _from_folder(_hub_folder(spec), f"hf:{spec.hf}", scratch / "converted")
    assert spec.train is not None
    if training_texts is None:
        raise UserError("tokenizer.train needs text sources to train on")
    return _trained(spec.train, scratch / "trained", training_texts)


def _hub_folder(spec: TokenizerSpec) -> Path:
    try:
        from huggingface_hub import snapshot_download

        return Path(
            snapshot_download(
                repo_id=spec.hf,
                revision=spec.revision,
                allow_patterns=[*TOKENIZER_FILES, "tokenizer*", "vocab*", "merges.txt"],
            )
        )
    except Exception as exc:
        raise UserError(
            f"could not fetch tokenizer {spec.hf!r} from the HF hub: {exc}",
            hint="check network / HF_TOKEN, or download it and set tokenizer.path to the folder",
        ) from exc


def _trained(
    train: TokenizerTrainSpec,
    folder: Path,
    training_texts: Callable[[TokenizerTrainSpec], Iterable[str]],
) -> LoadedTokenizer:
    from nemotron.data.engine import atomic_write_bytes

    key = hashlib.sha256(json.dumps(train.model_dump(mode="json"), sort_keys=True).encode())
    marker = folder / "train-key.txt"
    json_path = folder / "tokenizer.json"
    config_path = folder / "tokenizer_config.json"
    if not (json_path.is_file() and marker.is_file() and marker.read_text() == key.hexdigest()):
        tokenizer_json = train_byte_level_bpe(training_texts(train), train)
        folder.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(json_path, tokenizer_json.encode("utf-8"))
        config = default_tokenizer_config(train.special_tokens)
        atomic_write_bytes(config_path, json.dumps(config, indent=2).encode("utf-8"))
        atomic_write_bytes(marker, key.hexdigest().encode())
    files = {"tokenizer.json": json_path, "tokenizer_config.json": config_path}
    return LoadedTokenizer(json_path, _read_config(folder), files, "trained", _digest(files))


def default_tokenizer_config(special_tokens: list[str]) -> dict[str, Any]:
    """tokenizer_config.json for a prep-trained BPE: EOD <|endoftext|>, pad <|pad|>."""
    config: dict[str, Any] = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "model_max_length": 1_000_000,
        "clean_up_tokenization_spaces": False,
    }
    if "<|endoftext|>" in special_tokens:
        config["eos_token"] = "<|endoftext|>"
    if "<|pad|>" in special_tokens:
        config["pad_token"] = "<|pad|>"
    return config


def train_byte_level_bpe(texts: Iterable[str], train: TokenizerTrainSpec) -> str:
    """Train a byte-level BPE (GPT-2 style pre-tokenizer) and return its tokenizer.json text.

    Deterministic for the same texts and settings, so every Slurm task can train its own copy.
    """
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    if train.split_numbers:
        numbers = pre_tokenizers.Split(Regex(r"\p{N}{1,3}"), behavior="isolated")
        tokenizer.pre_tokenizer = pre_tokenizers.Sequence([numbers, byte_level])
    else:
        tokenizer.pre_tokenizer = byte_level
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=train.vocab_size,
        min_frequency=train.min_frequency,
        special_tokens=list(train.special_tokens),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer)
    return tokenizer.to_str()
