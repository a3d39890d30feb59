import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def run_script(script, args, cwd, env_extra=None, timeout=600):
    """Run `python script args...` in cwd with one thread; return the CompletedProcess."""
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    env.pop("WANDB_API_KEY", None)
    if env_extra:
        env.update(env_extra)
    return subprocess.run([sys.executable, script, *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def run(tmp_path):
    """run(script_name, *args) runs a repository script with --output-dir inside tmp_path."""

    def _run(script, *args, env_extra=None, output_dir=None):
        out = output_dir or tmp_path / "runs"
        return run_script(os.path.join(ROOT, script), [*args, "--output-dir", out], cwd=tmp_path,
                          env_extra=env_extra)

    return _run
