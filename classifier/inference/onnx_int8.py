"""``precision: int8``: the encoder run by ONNX Runtime with per-channel int8 weights.

Why this and not torch's own ``quantize_dynamic``: on the realistic length mix (bench/RESULTS.md, issue 21),
on an AVX2-only EPYC, ONNX Runtime's int8 kernels after its BERT fusions ran 1.42x torch fp32 with 99.83%
flag agreement; torch's per-tensor dynamic int8 ran 1.22x at 99.55%, its per-channel variant no faster than
fp32. ONNX Runtime fp32 alone was 1.06-1.07x torch fp32: the gain is the int8 kernels, not the runtime. On
CPUs with native bf16 (AMX, AVX-512-BF16) ``auto`` stays bf16 on torch, which measured faster there.

The conversion (export -> fuse -> quantise) is deterministic given the weights, takes tens of seconds,
and is done once per model: the result is cached under ``$FLAGSTREAM_CACHE_DIR/onnx/<key>/`` where the
key hashes the weights, the ONNX Runtime version and :data:`RECIPE`. The cache is written atomically (a
temporary directory renamed into place), so a crash mid-conversion never leaves a half model to load.
Needs the ``onnx`` extra (``onnxruntime`` + ``onnx``); without it, asking for int8 is a one-line error.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from flagstream.classifier.cache import cache_root
from flagstream.errors import UserError

log = logging.getLogger(__name__)

RECIPE = "export-opset17+bert-fusion+dynamic-qint8-per-channel/v1"


class Int8Unavailable(UserError):
    """int8 was asked for on an install without ONNX Runtime."""


def _require_ort():
    try:
        import onnx  # noqa: F401
        import onnxruntime
    except ImportError as exc:
        raise Int8Unavailable(
            f"precision int8 runs on ONNX Runtime, which is not installed ({exc.name} missing): "
            "pip install 'flagstream[onnx]', or use precision auto/fp32"
        ) from None
    return onnxruntime


def weights_key(model: torch.nn.Module, ort_version: str) -> str:
    """A hash of every parameter and buffer (names, dtypes, shapes, bytes) plus runtime and recipe."""
    h = hashlib.sha256(f"{RECIPE}\n{ort_version}\n".encode())
    for name, t in sorted(model.state_dict().items()):
        t = t.detach().contiguous().cpu()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)}\n".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()[:24]


class _LogitsOnly(torch.nn.Module):
    """The classifier as the exporter wants it: tensors in, the logits tensor out."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=input_ids, attention_mask=attention_mask).logits


def _encoder_shape(model: torch.nn.Module) -> tuple[int, int]:
    config = getattr(getattr(model, "encoder", None), "config", None) or getattr(model, "config", None)
    if config is None:
        raise ValueError("int8 export needs a BERT-style model with .encoder.config (heads, hidden size)")
    return int(config.num_attention_heads), int(config.hidden_size)


def convert(model: torch.nn.Module, out_dir: Path, keep_fp32: Callable[[str], bool] | None = None) -> Path:
    """fp32 torch model -> fused, per-channel int8 ONNX file in ``out_dir``; returns its path.

    ``keep_fp32``: node names (after fusion) to leave unquantised; only bench/int8_exclusions.py uses it, to
    measure whether keeping sensitive matmuls in fp32 buys flag agreement (on me5 it did not; bench/RESULTS.md).
    """
    _require_ort()
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.transformers import optimizer

    import onnx

    heads, hidden = _encoder_shape(model)
    fp32 = out_dir / "model.fp32.onnx"
    fused = out_dir / "model.fused.onnx"
    int8 = out_dir / "model.int8.onnx"
    dummy = (torch.ones(2, 8, dtype=torch.long), torch.ones(2, 8, dtype=torch.long))
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            _LogitsOnly(model).eval(), dummy, str(fp32), input_names=["input_ids", "attention_mask"],
            output_names=["logits"], opset_version=17, dynamo=False,
            dynamic_axes={"input_ids": {0: "batch", 1: "seq"}, "attention_mask": {0: "batch", 1: "seq"},
                          "logits": {0: "batch"}},
        )
    old = logging.getLogger().level
    logging.getLogger().setLevel(logging.ERROR)  # the quantiser warns on the root logger about pre-processing
    try:
        optimizer.optimize_model(str(fp32), model_type="bert", num_heads=heads, hidden_size=hidden).save_model_to_file(str(fused))
        exclude = [n.name for n in onnx.load(str(fused)).graph.node if keep_fp32(n.name)] if keep_fp32 else []
        quantize_dynamic(str(fused), str(int8), weight_type=QuantType.QInt8, per_channel=True,
                         nodes_to_exclude=exclude, extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
    finally:
        logging.getLogger().setLevel(old)
    fp32.unlink()
    fused.unlink()
    return int8


def cached_int8(model: torch.nn.Module) -> Path:
    """The int8 ONNX file for these weights, converting (once, atomically) when the cache lacks it."""
    ort = _require_ort()
    key = weights_key(model, ort.__version__)
    final = cache_root() / "onnx" / key
    path = final / "model.int8.onnx"
    if path.is_file():
        return path
    final.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{key}-", dir=final.parent))
    try:
        log.info("converting the model to int8 ONNX (once per model, cached)", extra={"cache": str(final)})
        convert(model, work)
        try:
            work.rename(final)
        except OSError:  # another process won the race: its copy is identical
            if not path.is_file():
                raise
    finally:
        if work.exists():
            shutil.rmtree(work, ignore_errors=True)
    return path


class _Output:
    __slots__ = ("logits",)

    def __init__(self, logits: torch.Tensor) -> None:
        self.logits = logits


class OnnxInt8Model:
    """Callable like the torch classifier (``model(input_ids=..., attention_mask=...).logits``)."""

    def __init__(self, path: Path, threads: int, head: torch.nn.Module | None = None) -> None:
        ort = _require_ort()
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = max(1, int(threads))
        opts.inter_op_num_threads = 1
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.log_severity_level = 3
        self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        self.path = path
        self.head = head  # so an empty batch still knows how many labels to return

    @classmethod
    def from_torch(cls, model: torch.nn.Module) -> "OnnxInt8Model":
        return cls(cached_int8(model.float().eval()), torch.get_num_threads(), getattr(model, "head", None))

    def eval(self) -> "OnnxInt8Model":
        return self

    def __call__(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, **_: object) -> _Output:
        z = self.session.run(None, {"input_ids": np.ascontiguousarray(input_ids.numpy(), dtype=np.int64),
                                    "attention_mask": np.ascontiguousarray(attention_mask.numpy(), dtype=np.int64)})[0]
        return _Output(torch.from_numpy(z))
