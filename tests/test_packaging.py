"""The installed import names are ours (issue 15): the wheel holds ``flagstream.streaming`` and
``flagstream.classifier``, never a top-level ``streaming`` or ``classifier`` that would clash with another
distribution (``streaming`` is also a popular data-loading library's import name).

The wheel is built from this checkout and installed into a fresh virtual environment that borrows only the
dependencies of the running one (a ``.pth`` line), then imported beside an unrelated module named ``streaming``.
"""

from __future__ import annotations

import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_every_source_package_is_declared_under_the_flagstream_name():
    conf = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]
    declared = set(conf["packages"])
    dirs = conf["package-dir"]
    on_disk = set()
    for name in ("flagstream", "flagstream.streaming", "flagstream.classifier"):
        folder = ROOT / dirs.get(name, name.replace(".", "/"))
        for init in folder.rglob("__init__.py"):
            rel = init.parent.relative_to(folder).parts
            on_disk.add(".".join((name, *rel)))
    assert on_disk == declared, f"packages on disk but not in pyproject (or the reverse): {on_disk ^ declared}"


def test_wheel_installs_beside_a_module_named_streaming(tmp_path):
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                    "--disable-pip-version-check", "-w", str(wheels), str(ROOT)], check=True, timeout=300)
    (wheel,) = wheels.glob("flagstream-*.whl")
    tops = {n.split("/")[0] for n in zipfile.ZipFile(wheel).namelist() if not n.split("/")[0].endswith(".dist-info")}
    assert tops == {"flagstream"}, tops

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    py = venv / "bin" / "python"
    site = Path(subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip())
    # dependencies only: a plain path line, so the running environment's editable finder is not activated
    deps = [p for p in sys.path if p.endswith("site-packages") and Path(p).is_dir()]
    (site / "deps.pth").write_text("\n".join(deps) + "\n", encoding="utf-8")
    subprocess.run([sys.executable, "-m", "pip", "--python", str(py), "install", "-q", "--no-deps",
                    "--disable-pip-version-check", str(wheel)], check=True, timeout=300)

    work = tmp_path / "work"
    work.mkdir()
    (work / "streaming.py").write_text("MARK = 'another library'\n", encoding="utf-8")
    probe = ("import streaming, flagstream, flagstream.streaming.loop.pipeline, flagstream.classifier.inference.scoring, "
             "flagstream.cli; assert streaming.MARK == 'another library'; "
             "import os; assert os.path.dirname(flagstream.__file__).startswith(os.environ['SITE']), flagstream.__file__; "
             "from importlib import resources; "
             "assert resources.files('flagstream.streaming.ops.console').joinpath('static').is_dir(); print('ok')")
    out = subprocess.run([str(py), "-c", probe], cwd=work, capture_output=True, text=True, timeout=300,
                         env={"PATH": "/usr/bin:/bin", "SITE": str(site), "HF_HUB_OFFLINE": "1"})
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]
