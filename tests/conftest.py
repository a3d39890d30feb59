import os
import subprocess
import sys

import numpy as np
import pytest
import torch

torch.set_num_threads(1)  # one thread per test process, as in every run (pytest -n auto: one process per core)

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


def random_batch(T, N, terminated, truncated, seed=0):
    """A (T, N) batch for the return and advantage references: random float64 rewards, values and next
    values, and boolean terminations / truncations set at the given (t, n) cells, dones = either.
    Returns (rewards, values, next_values, terminations, truncations, dones)."""
    rng = np.random.default_rng(seed)
    rewards, values, next_values = (rng.normal(size=(T, N)) for _ in range(3))
    flags = []
    for cells in (terminated, truncated):
        flag = np.zeros((T, N), dtype=bool)
        for t, n in cells:
            flag[t, n] = True
        flags.append(flag)
    terminations, truncations = flags
    return rewards, values, next_values, terminations, truncations, terminations | truncations
