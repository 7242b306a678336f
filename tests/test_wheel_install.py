"""``pip install`` of the wheel is enough: it enables the server extension and the prebuilt JupyterLab one.

The wheel goes into a fresh venv that sees this environment's packages (jupyterlab, jupyter_server)
through a .pth line, without downloading them. A .pth-added folder's own .pth files are not run, so
the editable install of jupyter_finetune living there stays invisible; the test also checks that
the module, the lab extension and the server config all come from the new venv's prefix.
"""

from __future__ import annotations

import re
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BUILT = ROOT / "jupyter_finetune" / "labextension" / "package.json"
ANSI = re.compile(r"\x1b\[[0-9;]*m")

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not BUILT.is_file(), reason="labextension not built: run `python "
                                                             "labextension/build.py` (make install does)")]


def run(*args: str | Path, cwd: Path, env: dict[str, str] | None = None) -> str:
    done = subprocess.run([str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    out = ANSI.sub("", done.stdout + done.stderr)
    assert done.returncode == 0, out
    return out


def section(listing: str, heading: str) -> str:
    """The lines below ``heading`` up to the next unindented line (one config or extension folder)."""
    lines = listing.splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip() == heading)
    end = next((i for i in range(start + 1, len(lines)) if lines[i] and not lines[i][0].isspace()), len(lines))
    return "\n".join(lines[start + 1:end])


@pytest.mark.timeout(300)
def test_wheel_in_a_fresh_venv_enables_the_server_and_lab_extensions(tmp_path):
    run(sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", tmp_path / "dist",
        ROOT, cwd=tmp_path)
    [wheel] = (tmp_path / "dist").glob("jupyter_finetune-*.whl")
    venv = tmp_path / "venv"
    run(sys.executable, "-m", "venv", "--without-pip", venv, cwd=tmp_path)
    python = venv / "bin" / "python"
    site = Path(run(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])", cwd=tmp_path).strip())
    (site / "parent_env.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    # --ignore-installed: the editable install seen through the .pth is left alone, never uninstalled
    run(python, "-m", "pip", "install", "-q", "--no-deps", "--ignore-installed", wheel, cwd=tmp_path)

    prefix = venv.resolve()
    module = run(python, "-c", "import jupyter_finetune; print(jupyter_finetune.__file__)", cwd=tmp_path)
    assert Path(module.strip()).resolve().is_relative_to(prefix)
    env = {"PATH": f"{venv / 'bin'}:/usr/bin:/bin", "HOME": str(tmp_path)}  # no user-level jupyter dirs

    labextensions = run(python, "-m", "jupyterlab.labextensions", "list", cwd=tmp_path, env=env)
    print(labextensions)
    installed = section(labextensions, str(prefix / "share" / "jupyter" / "labextensions"))
    assert re.search(r"jupyter-finetune v0\.1\.0 enabled OK \(python, jupyter-finetune\)", installed), labextensions

    server = run(python, "-m", "jupyter_server.extension.serverextension", "list", cwd=tmp_path, env=env)
    print(server)
    enabled = section(server, f"Config dir: {prefix / 'etc' / 'jupyter'}")
    assert re.search(r"jupyter_finetune enabled\n\s+- Validating jupyter_finetune...\n\s+jupyter_finetune 0\.1\.0 OK",
                     enabled), server
