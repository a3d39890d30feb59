"""REINFORCE (Monte-Carlo policy gradient with a learned baseline) in one file.

Paper: Williams, "Simple Statistical Gradient-Following Algorithms for Connectionist Reinforcement
Learning", 1992, https://doi.org/10.1007/BF00992696

The algorithm
-------------
The policy gradient theorem, by the log-derivative trick grad P = P grad log P and the fact that the
dynamics do not depend on theta:

    grad J(theta) = E_tau[ sum_t grad_theta log pi_theta(a_t | s_t) * A_t ]

Repeat until `--total-timesteps` environment steps have been taken:

1. Collect a dataset S of trajectories (`num_envs * num_steps` steps) with the current policy pi.
2. A_t = G_t - V(s_t), with the Monte-Carlo reward-to-go G_t = sum_k gamma^k r_{t+k} of the rest of
   the episode (not the whole episode's return, and not GAE) and a learned state-value baseline V,
   which lowers the variance without biasing the gradient (`--no-baseline`: A_t = G_t).
   An episode cut by a time limit or by the end of the batch continues past the data:
   G_t is bootstrapped there with V(final observation). An episode that terminated is not.
3. Take `update_epochs` gradient steps (default 1) on

       Loss(theta) = -(1/|S|) sum_i sum_t A_it * log pi_theta(a_it | s_it)

   and fit V to G by regression.
4. Throw the data away and collect fresh data with the updated policy.

Why one step per batch: the data came from pi_0, the policy before the update. After the first step
the policy is pi_1 != pi_0, and the same loss no longer estimates grad J at pi_1 (it would need the
importance weights pi_1 / pi_0, which is where TRPO starts), and nothing stops a step from moving the
policy far in behaviour space on a noisy estimate. Both problems grow with every extra step; the
KL between the policy before and after each update is logged so the instability can be watched.

Implementation details
----------------------
1. Vectorized environments (gymnasium 1.x `SyncVectorEnv`) in SAME_STEP autoreset mode: when an
   episode ends, `step` returns the first observation of the next episode and the final observation
   in `info["final_obs"]`; no transition is wasted or mixed across episodes.
2. Termination and truncation are kept apart. Terminated: no bootstrap. Truncated (time limit):
   bootstrap with V(final observation). The end of a batch is a cut, bootstrapped with V(next obs).
   The critic is trained even with `--no-baseline`, for these bootstraps.
3. Separate actor and critic MLPs (64-64, tanh), orthogonal initialization (gain sqrt(2) hidden,
   0.01 for the policy head, 1 for the value head), zero biases; each has its own Adam optimizer.
4. Discrete actions: categorical policy over logits. Box actions: diagonal Gaussian with a
   state-independent log-std parameter; log-probs summed over action dimensions; actions sampled
   unclipped, clipped only when stepping the env, stored unclipped.
5. Advantages normalized over the batch (population std), a flag; policy gradient norm clipped.
6. Box-action environments by default: running observation normalization (clipped to +-10) and
   reward scaling by the running std of the discounted return (clipped to +-10). Observation
   statistics are frozen during a rollout and updated from the batch afterwards; they are part of
   the model: saved in `model.pt`, frozen in evaluation. The update changes the function pi computes
   with theta unchanged; `charts/normalizer_kl` logs that change (mean KL on the batch). Unlike
   trpo.py, the update here is not function-preserving (README: observation normalization).
   The rollout itself only samples actions; log pi_0(a|s) and V(s) of the whole batch are computed
   in one pass after it.
7. Logged per update, after it: the policy gradient's norm, KL(pi_before || pi_after) by the
   (r - 1) - log r estimator, entropy, the critic's loss and explained variance.

Usage: python reinforce.py --env-id CartPole-v1      python reinforce.py --help
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import platform
import random
import re
import shutil
import subprocess
import sys
import time
from collections import deque
from dataclasses import asdict, dataclass
from typing import Callable, Optional

import gymnasium as gym
import numpy as np
import torch
import torch.nn as nn
import tyro

ALGO = "reinforce"
PROGRESS_EVERY_S = 5.0  # seconds between two progress lines on stdout
EVAL_SEED_OFFSET = 1_000_000  # evaluation episodes use seeds disjoint from the training envs'
HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)


# ---------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------
@dataclass
class Args:
    # Experiment
    exp_name: str = os.path.splitext(os.path.basename(__file__))[0]
    """name of the experiment, part of the run directory's name"""
    seed: int = 1
    """seed of python, numpy, torch and the environments"""
    torch_deterministic: bool = True
    """force deterministic cuDNN kernels (CPU runs are deterministic either way)"""
    cuda: bool = True
    """use CUDA when it is available (otherwise a warning and the CPU)"""
    torch_threads: int = 1
    """CPU threads torch may use; 1 is fastest for small MLPs and lets runs share a machine"""
    track: bool = False
    """log to Weights & Biases (set WANDB_MODE=offline to log without a network)"""
    wandb_project_name: str = "rl-reference"
    """Weights & Biases project"""
    wandb_entity: Optional[str] = None
    """Weights & Biases entity (team or user); None = your default"""
    capture_video: bool = False
    """record the evaluation episodes to `videos/` in the run directory (needs moviepy)"""
    save_model: bool = False
    """write `model.pt` (weights, normalization statistics, optimizer) in the run directory"""
    load_model: Optional[str] = None
    """start from this `model.pt`; with --total-timesteps 0 it is only evaluated"""
    eval_episodes: int = 10
    """episodes with the deterministic policy and frozen normalization after training (0 = none)"""
    output_dir: str = "runs"
    """directory under which each run gets its own new directory"""

    # Environment
    env_id: str = "CartPole-v1"
    """gymnasium id, also `module:EnvName-vN` to import the module that registers it"""
    total_timesteps: int = 1_000_000
    """environment steps to train for (all environments together)"""
    num_envs: int = 8
    """parallel environments (gymnasium SyncVectorEnv, stepped in this process)"""
    norm_obs: Optional[bool] = None
    """running observation normalization; default: on for Box actions, off for Discrete"""
    norm_reward: Optional[bool] = None
    """reward scaling by the running std of the discounted return; default: as --norm-obs"""
    clip_obs: float = 10.0
    """normalized observations are clipped to [-clip_obs, clip_obs]"""
    clip_reward: float = 10.0
    """scaled rewards are clipped to [-clip_reward, clip_reward]"""

    # Algorithm
    num_steps: int = 256
    """steps per environment per rollout; batch size = num_envs * num_steps (2048 by default)"""
    gamma: float = 0.99
    """discount factor, in (0, 1]"""
    learning_rate: float = 3e-3
    """Adam learning rate of the policy"""
    update_epochs: int = 1
    """gradient steps on each batch (more than 1 reuses stale data: see the module docstring)"""
    baseline: bool = True
    """subtract the learned V(s) from the reward-to-go"""
    norm_adv: bool = True
    """normalize advantages over the batch"""
    max_grad_norm: float = 0.5
    """policy gradient-norm clipping threshold"""
    vf_learning_rate: float = 1e-3
    """Adam learning rate of the critic"""
    vf_update_epochs: int = 10
    """critic epochs over each batch"""
    vf_num_minibatches: int = 16
    """critic minibatches per epoch; must divide the batch size"""
    hidden_sizes: tuple[int, ...] = (64, 64)
    """hidden layer widths of both the actor and the critic"""


class ConfigError(Exception):
    """Bad input: reported as one line on stderr, exit code 2, before any work."""


class TrainingError(Exception):
    """Training cannot go on (e.g. a non-finite loss): reported as one line, exit code 1."""


def validate_args(args: Args) -> None:
    """Raise ConfigError for the first invalid argument."""
    checks = [
        (args.total_timesteps >= 0, "--total-timesteps must be >= 0"),
        (args.total_timesteps > 0 or args.load_model, "--total-timesteps 0 needs --load-model (evaluate only)"),
        (args.num_envs > 0, "--num-envs must be > 0"),
        (args.num_steps > 0, "--num-steps must be > 0"),
        (0 < args.gamma <= 1, "--gamma must be in (0, 1]"),
        (args.learning_rate > 0, "--learning-rate must be > 0"),
        (args.update_epochs > 0, "--update-epochs must be > 0"),
        (args.max_grad_norm > 0, "--max-grad-norm must be > 0"),
        (args.vf_learning_rate > 0, "--vf-learning-rate must be > 0"),
        (args.vf_update_epochs > 0, "--vf-update-epochs must be > 0"),
        (args.vf_num_minibatches > 0, "--vf-num-minibatches must be > 0"),
        (args.clip_obs > 0 and args.clip_reward > 0, "--clip-obs and --clip-reward must be > 0"),
        (args.eval_episodes >= 0, "--eval-episodes must be >= 0"),
        (args.torch_threads > 0, "--torch-threads must be > 0"),
        (len(args.hidden_sizes) > 0 and min(args.hidden_sizes) > 0, "--hidden-sizes must be positive widths"),
    ]
    for ok, message in checks:
        if not ok:
            raise ConfigError(message)
    batch_size = args.num_envs * args.num_steps
    if batch_size % args.vf_num_minibatches != 0:
        raise ConfigError(
            f"--vf-num-minibatches ({args.vf_num_minibatches}) must divide the batch size "
            f"num_envs * num_steps = {batch_size}"
        )
    if 0 < args.total_timesteps < batch_size:
        raise ConfigError(f"--total-timesteps ({args.total_timesteps}) is smaller than one batch ({batch_size})")
    if args.load_model is not None and not os.path.isfile(args.load_model):
        raise ConfigError(f"--load-model: no such file: {args.load_model}")


# ---------------------------------------------------------------------------------------------
# Environments
# ---------------------------------------------------------------------------------------------
def make_env(env_id: str, render_mode: Optional[str] = None):
    """A thunk that builds one environment; the vector env calls it once per copy."""

    def thunk():
        # gymnasium's own wrappers only (TimeLimit, order and passive checks): rewards stay raw,
        # normalization happens in this file where it can be saved and frozen.
        return gym.make(env_id) if render_mode is None else gym.make(env_id, render_mode=render_mode)

    return thunk


def make_vector_env(env_id: str, num_envs: int) -> gym.vector.SyncVectorEnv:
    """Training environments; SAME_STEP autoreset puts the final observation in info['final_obs']."""
    return gym.vector.SyncVectorEnv(
        [make_env(env_id) for _ in range(num_envs)],
        autoreset_mode=gym.vector.AutoresetMode.SAME_STEP,
    )


def first_line(error: Exception) -> str:
    """The first line of an exception's message (or its type), for one-line errors."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def check_env(env_id: str) -> tuple[gym.spaces.Box, gym.spaces.Space]:
    """Build the env once to turn an unknown id or an unsupported space into a ConfigError."""
    try:
        env = gym.make(env_id)
    except Exception as e:  # gymnasium raises several error types (NameNotFound, ImportError, ...)
        raise ConfigError(f"cannot make environment {env_id!r}: {first_line(e)}") from None
    obs_space, act_space = env.observation_space, env.action_space
    env.close()
    if not (isinstance(obs_space, gym.spaces.Box) and len(obs_space.shape) == 1):
        raise ConfigError(f"unsupported observation space {obs_space}: only flat Box observations are supported")
    if isinstance(act_space, gym.spaces.Box) and len(act_space.shape) != 1:
        raise ConfigError(f"unsupported action space {act_space}: only 1-d Box actions are supported")
    if not isinstance(act_space, (gym.spaces.Box, gym.spaces.Discrete)):
        raise ConfigError(f"unsupported action space {act_space}: only Discrete and Box are supported")
    return obs_space, act_space


def check_video(env_id: str) -> None:
    """--capture-video needs moviepy and a working renderer: fail before training, not after."""
    try:
        import moviepy  # noqa: F401
    except ImportError:
        raise ConfigError("--capture-video needs moviepy: pip install moviepy") from None
    try:
        env = gym.make(env_id, render_mode="rgb_array")
        env.reset(seed=0)
        frame = env.render()
        env.close()
    except Exception as e:
        raise ConfigError(f"--capture-video: {env_id} cannot render ({first_line(e)}); for MuJoCo try MUJOCO_GL=egl") from None
    if frame is None:
        raise ConfigError(f"--capture-video: {env_id} returned no frame in rgb_array mode")


# ---------------------------------------------------------------------------------------------
# Normalization
# ---------------------------------------------------------------------------------------------
class RunningMeanStd(nn.Module):
    """Running mean and variance of a stream of batches (parallel Welford), kept as buffers so
    that they are saved in the model's state_dict."""

    def __init__(self, shape: tuple[int, ...] = (), epsilon: float = 1e-4):
        super().__init__()
        self.register_buffer("mean", torch.zeros(shape, dtype=torch.float64))
        self.register_buffer("var", torch.ones(shape, dtype=torch.float64))
        self.register_buffer("count", torch.tensor(epsilon, dtype=torch.float64))

    @torch.no_grad()
    def update(self, x: torch.Tensor) -> None:
        """Merge a batch x of shape (n, *shape) into the statistics."""
        x = x.to(self.mean.dtype)
        batch_mean, batch_var, n = x.mean(0), x.var(0, correction=0), x.shape[0]
        delta = batch_mean - self.mean
        total = self.count + n
        m2 = self.var * self.count + batch_var * n + delta.square() * self.count * n / total
        self.mean += delta * n / total
        self.var.copy_(m2 / total)
        self.count.copy_(total)

    def normalize(self, x: torch.Tensor, clip: float, eps: float = 1e-8) -> torch.Tensor:
        """(x - mean) / sqrt(var + eps), clipped to [-clip, clip], in x's dtype."""
        mean, std = self.mean.to(x.dtype), (self.var + eps).sqrt().to(x.dtype)
        return ((x - mean) / std).clamp(-clip, clip)


def discounted_returns_stream(
    rewards: np.ndarray, dones: np.ndarray, running: np.ndarray, gamma: float
) -> np.ndarray:
    """R_t = gamma * R_{t-1} + r_t per environment, reset to 0 after a done step.

    rewards, dones: (T, N); `running` (N,) is the carried state R_{-1}, updated in place.
    Returns the (T, N) sequence R_t whose running std scales the rewards.
    """
    out = np.empty_like(rewards)
    for t in range(rewards.shape[0]):
        running[:] = gamma * running + rewards[t]
        out[t] = running
        running[dones[t]] = 0.0
    return out


# ---------------------------------------------------------------------------------------------
# Networks
# ---------------------------------------------------------------------------------------------
def layer_init(layer: nn.Linear, std: float = math.sqrt(2), bias: float = 0.0) -> nn.Linear:
    nn.init.orthogonal_(layer.weight, std)
    nn.init.constant_(layer.bias, bias)
    return layer


def mlp(sizes: list[int], out_std: float) -> nn.Sequential:
    """Linear-tanh stack; orthogonal init with gain sqrt(2), `out_std` for the output layer."""
    layers: list[nn.Module] = []
    for i in range(len(sizes) - 2):
        layers += [layer_init(nn.Linear(sizes[i], sizes[i + 1])), nn.Tanh()]
    layers.append(layer_init(nn.Linear(sizes[-2], sizes[-1]), std=out_std))
    return nn.Sequential(*layers)


class Agent(nn.Module):
    """Separate actor and critic; the observation normalizer is part of the model.

    Box actions: the actor outputs the Gaussian mean, `actor_logstd` is a state-independent
    parameter. Discrete actions: the actor outputs the categorical logits.
    """

    def __init__(self, obs_dim: int, action_space: gym.spaces.Space, hidden_sizes: tuple[int, ...],
                 norm_obs: bool, clip_obs: float):
        super().__init__()
        self.continuous = isinstance(action_space, gym.spaces.Box)
        self.norm_obs, self.clip_obs = norm_obs, clip_obs
        act_dim = action_space.shape[0] if self.continuous else int(action_space.n)
        self.obs_rms = RunningMeanStd((obs_dim,))
        self.critic = mlp([obs_dim, *hidden_sizes, 1], out_std=1.0)
        self.actor = mlp([obs_dim, *hidden_sizes, act_dim], out_std=0.01)
        if self.continuous:
            self.actor_logstd = nn.Parameter(torch.zeros(act_dim))

    def normalize(self, obs: torch.Tensor) -> torch.Tensor:
        return self.obs_rms.normalize(obs, self.clip_obs) if self.norm_obs else obs

    def value(self, x: torch.Tensor) -> torch.Tensor:
        """V(s) for normalized observations x: shape (batch,)."""
        return self.critic(x).squeeze(-1)

    def sample(self, x: torch.Tensor) -> torch.Tensor:
        """a ~ pi(.|s) for normalized observations x (log pi(a|s) comes from `log_prob_entropy`)."""
        out = self.actor(x)
        if self.continuous:
            return out + self.actor_logstd.exp() * torch.randn_like(out)
        return torch.multinomial(out.softmax(-1), 1).squeeze(-1)

    def log_prob_entropy(self, x: torch.Tensor, action: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """log pi(a|s), shape (batch,), and the entropy H[pi(.|s)], shape (batch,) or () for the
        Gaussian, whose entropy does not depend on s."""
        out = self.actor(x)
        if self.continuous:
            return gaussian_log_prob(out, self.actor_logstd, action), gaussian_entropy(self.actor_logstd)
        return categorical_log_prob(out, action), categorical_entropy(out)

    def act_deterministic(self, x: torch.Tensor) -> torch.Tensor:
        """The mode of pi(.|s): the Gaussian mean, or the most likely discrete action."""
        out = self.actor(x)
        return out if self.continuous else out.argmax(-1)

    def input_change_kl(self, x0: torch.Tensor, x1: torch.Tensor) -> torch.Tensor:
        """Mean KL(pi(.|x0) || pi(.|x1)) for two normalizations x0, x1 of the same observations."""
        out0, out1 = self.actor(x0), self.actor(x1)
        if self.continuous:
            return gaussian_kl(out0, self.actor_logstd, out1, self.actor_logstd).mean()
        return categorical_kl(out0, out1).mean()


# ---------------------------------------------------------------------------------------------
# REINFORCE math: small pure functions, tested in tests/test_reinforce_math.py
# ---------------------------------------------------------------------------------------------
def gaussian_log_prob(mean: torch.Tensor, log_std: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
    """log N(a; mu, diag(sigma^2)) = -sum_j [ (a_j - mu_j)^2 / (2 sigma_j^2) + log sigma_j + log(2 pi) / 2 ]."""
    z = (action - mean) * torch.exp(-log_std)
    return -(0.5 * z.square() + log_std + HALF_LOG_2PI).sum(-1)


def gaussian_entropy(log_std: torch.Tensor) -> torch.Tensor:
    """H[N(mu, diag(sigma^2))] = sum_j [ log sigma_j + (1 + log(2 pi)) / 2 ]."""
    return (log_std + 0.5 + HALF_LOG_2PI).sum(-1)


def categorical_log_prob(logits: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
    """log pi(a|s) = logits_a - logsumexp(logits)."""
    return logits.log_softmax(-1).gather(-1, action.unsqueeze(-1)).squeeze(-1)


def categorical_entropy(logits: torch.Tensor) -> torch.Tensor:
    """H = -sum_a pi(a|s) log pi(a|s)."""
    log_p = logits.log_softmax(-1)
    return -(log_p.exp() * log_p).sum(-1)


def gaussian_kl(mean0: torch.Tensor, log_std0: torch.Tensor, mean1: torch.Tensor, log_std1: torch.Tensor) -> torch.Tensor:
    """KL(N0 || N1) for diagonal Gaussians, summed over action dimensions:
    sum_j [ log(sigma1_j / sigma0_j) + (sigma0_j^2 + (mu0_j - mu1_j)^2) / (2 sigma1_j^2) - 1/2 ]."""
    var0, var1 = torch.exp(2 * log_std0), torch.exp(2 * log_std1)
    return (log_std1 - log_std0 + (var0 + (mean0 - mean1).square()) / (2 * var1) - 0.5).sum(-1)


def categorical_kl(logits0: torch.Tensor, logits1: torch.Tensor) -> torch.Tensor:
    """KL(p0 || p1) = sum_a p0(a) (log p0(a) - log p1(a))."""
    log_p0, log_p1 = logits0.log_softmax(-1), logits1.log_softmax(-1)
    return (log_p0.exp() * (log_p0 - log_p1)).sum(-1)


def successor_values(values: torch.Tensor, last_value: torch.Tensor, final_values: torch.Tensor,
                     dones: torch.Tensor) -> torch.Tensor:
    """V(s_{t+1}) for each step of a (T, N) rollout.

    Inside an episode it is the next step's value; where the episode ended at t (dones[t]) it is
    final_values[t] = V(final observation), because with autoreset the next row already holds the
    next episode's first observation; after the last step it is last_value = V(next observation).
    """
    return torch.where(dones, final_values, torch.cat([values[1:], last_value.unsqueeze(0)]))


def reward_to_go(
    rewards: torch.Tensor,
    next_values: torch.Tensor,
    terminations: torch.Tensor,
    dones: torch.Tensor,
    gamma: float,
) -> torch.Tensor:
    """Monte-Carlo reward-to-go G_t = sum_k gamma^k r_{t+k} over the rest of each episode, (T, N).

    Where an episode stops at t without terminating (truncated, or the batch ends) the sum continues
    with next_values[t] = V(s_{t+1}) in place of the unseen rewards; after a termination it stops.
    """
    # G_t = r_t + gamma * [ (1 - cut_t) * G_{t+1} + cut_t * (1 - terminated_t) * V(s_{t+1}) ],
    # cut_t = done_t, and every episode is cut at the end of the batch
    cuts = dones.clone()
    cuts[-1] = 1.0
    returns = torch.zeros_like(rewards)
    next_return = torch.zeros_like(rewards[0])
    for t in reversed(range(rewards.shape[0])):
        continued = (1.0 - cuts[t]) * next_return + cuts[t] * (1.0 - terminations[t]) * next_values[t]
        next_return = rewards[t] + gamma * continued
        returns[t] = next_return
    return returns


def reinforce_loss(logprobs: torch.Tensor, advantages: torch.Tensor) -> torch.Tensor:
    """Loss = -(1/|S|) sum_i sum_t A_it * log pi(a_it | s_it); its gradient is -grad J."""
    return -(advantages * logprobs).mean()


def normalize_advantages(advantages: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """(A - mean) / (std + eps) with the population std: one sample gives 0, never NaN."""
    return (advantages - advantages.mean()) / (advantages.std(correction=0) + eps)


def approx_kl(logratio: torch.Tensor) -> torch.Tensor:
    """KL(pi_0 || pi_1) ~ mean[(r - 1) - log r] over samples from pi_0: unbiased, never negative."""
    return (logratio.exp() - 1.0 - logratio).mean()


def explained_variance(predictions: torch.Tensor, targets: torch.Tensor) -> float:
    """1 - Var[targets - predictions] / Var[targets]; NaN when the targets are constant."""
    var_targets = targets.var()
    return float("nan") if var_targets == 0 else float(1.0 - (targets - predictions).var() / var_targets)


# ---------------------------------------------------------------------------------------------
# Run directory, logging, checkpoints, evaluation
# ---------------------------------------------------------------------------------------------
def make_run_dir(output_dir: str, env_id: str, exp_name: str, seed: int) -> tuple[str, str]:
    """`{output_dir}/{env_id}__{exp_name}__{seed}__{unix_time}`, made safe for a path, never reused."""
    base = re.sub(r"[^A-Za-z0-9._-]+", "_", f"{env_id}__{exp_name}__{seed}__{int(time.time())}")
    for suffix in range(1000):
        run_name = base if suffix == 0 else f"{base}_{suffix}"
        path = os.path.join(output_dir, run_name)
        try:
            os.makedirs(path)
            return run_name, path
        except FileExistsError:
            continue
        except OSError as e:  # --output-dir is a file, read-only, ...
            raise ConfigError(f"--output-dir {output_dir}: cannot create a run directory there "
                              f"({e.strerror or type(e).__name__})") from None
    raise ConfigError(f"could not create a new run directory under {output_dir}")


class MetricsLogger:
    """One JSON line per event in metrics.jsonl; the same dict goes to wandb when tracking."""

    def __init__(self, path: str, wandb_run=None):
        self.file = open(path, "w")
        self.wandb_run = wandb_run
        self.start = time.time()

    def log(self, global_step: int, metrics: dict) -> None:
        record = {"global_step": int(global_step), "time": round(time.time() - self.start, 3)}
        for key, value in metrics.items():
            value = float(value)
            record[key] = value if math.isfinite(value) else None  # JSON has no NaN
        self.file.write(json.dumps(record) + "\n")
        if self.wandb_run is not None:
            self.wandb_run.log(record)

    def close(self) -> None:
        self.file.close()


def save_checkpoint(path: str, args: Args, agent: Agent, optimizers: dict[str, torch.optim.Optimizer],
                    reward_rms: RunningMeanStd, global_step: int) -> None:
    torch.save({
        "algo": ALGO,
        "args": asdict(args),
        "global_step": global_step,
        "norm_obs": agent.norm_obs,
        "agent": agent.state_dict(),
        "optimizer": {name: opt.state_dict() for name, opt in optimizers.items()},
        "reward_rms": reward_rms.state_dict(),
    }, path)


def load_checkpoint(path: str, agent: Agent, optimizers: dict[str, torch.optim.Optimizer],
                    reward_rms: RunningMeanStd, device: torch.device) -> None:
    """Restore weights, normalization statistics and optimizer; any mismatch is a ConfigError."""
    try:
        checkpoint = torch.load(path, map_location=device, weights_only=True)
    except Exception as e:
        raise ConfigError(f"--load-model {path}: not a readable checkpoint ({type(e).__name__})") from None
    if not isinstance(checkpoint, dict) or checkpoint.get("algo") != ALGO:
        raise ConfigError(f"--load-model {path}: not a {ALGO}.py checkpoint")
    if checkpoint["norm_obs"] != agent.norm_obs:
        raise ConfigError(f"--load-model {path}: saved with norm_obs={checkpoint['norm_obs']}, "
                          f"this run has norm_obs={agent.norm_obs}")
    expected = {k: tuple(v.shape) for k, v in agent.state_dict().items()}
    saved = {k: tuple(v.shape) for k, v in checkpoint["agent"].items()}
    if expected != saved:
        raise ConfigError(f"--load-model {path}: its networks do not fit this env and --hidden-sizes "
                          f"(saved hidden sizes {tuple(checkpoint['args']['hidden_sizes'])}, "
                          f"env {checkpoint['args']['env_id']})")
    agent.load_state_dict(checkpoint["agent"])
    for name, opt in optimizers.items():
        opt.load_state_dict(checkpoint["optimizer"][name])
    reward_rms.load_state_dict(checkpoint["reward_rms"])


@torch.no_grad()
def evaluate(agent: Agent, env_id: str, episodes: int, seed: int, device: torch.device,
             video_dir: Optional[str] = None) -> list[float]:
    """Raw returns of `episodes` episodes with the deterministic policy and frozen normalization."""
    env = make_env(env_id, "rgb_array" if video_dir else None)()
    if video_dir:
        # one file per evaluation episode
        env = gym.wrappers.RecordVideo(env, video_dir, episode_trigger=lambda episode: True)
    action_low = action_high = None
    if agent.continuous:
        action_low, action_high = env.action_space.low, env.action_space.high
    returns = []
    for episode in range(episodes):
        obs, _ = env.reset(seed=seed + EVAL_SEED_OFFSET + episode)
        done, episode_return = False, 0.0
        while not done:
            x = agent.normalize(torch.as_tensor(obs, dtype=torch.float32, device=device).unsqueeze(0))
            action = agent.act_deterministic(x)[0].cpu().numpy()
            if agent.continuous:
                action = np.clip(action, action_low, action_high)
            obs, reward, terminated, truncated, _ = env.step(action)
            episode_return += float(reward)
            done = terminated or truncated
        returns.append(episode_return)
    env.close()
    return returns


def run_config(args: Args, resolved: dict, device: torch.device) -> dict:
    """What a run directory's config.json records: every argument (per-kind defaults resolved), the
    command line, this file's name, sha256 and git commit (None outside a repository), the library
    versions and the device."""
    path = os.path.abspath(__file__)
    with open(path, "rb") as f:
        sha256 = hashlib.sha256(f.read()).hexdigest()
    try:
        git = subprocess.run(["git", "rev-parse", "HEAD"], cwd=os.path.dirname(path), capture_output=True,
                             text=True, timeout=10)
        commit = git.stdout.strip() if git.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        commit = None
    try:
        import mujoco  # only to record its version
        mujoco_version = mujoco.__version__
    except ImportError:
        mujoco_version = None
    return {
        "args": {**asdict(args), **resolved},
        "command": [os.path.basename(sys.executable), *sys.argv],
        "script": os.path.basename(path),
        "sha256": sha256,
        "git_commit": commit,
        "versions": {"python": platform.python_version(), "torch": torch.__version__,
                     "gymnasium": gym.__version__, "mujoco": mujoco_version},
        "device": str(device),
    }


def format_seconds(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


# ---------------------------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------------------------
def main(args: Args) -> dict:
    """Train (and evaluate) as `args` says; returns the summary that is written to summary.json."""
    validate_args(args)
    obs_space, action_space = check_env(args.env_id)
    continuous = isinstance(action_space, gym.spaces.Box)
    norm_obs = continuous if args.norm_obs is None else args.norm_obs
    norm_reward = continuous if args.norm_reward is None else args.norm_reward
    if args.capture_video and args.eval_episodes > 0:
        check_video(args.env_id)

    # Seeding: python, numpy, torch here; the environments at their first reset.
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.torch_threads)
    torch.backends.cudnn.deterministic = args.torch_deterministic
    torch.backends.cudnn.benchmark = not args.torch_deterministic
    if args.cuda and not torch.cuda.is_available():
        print("warning: --cuda is set but CUDA is not available; running on the CPU", file=sys.stderr)
    device = torch.device("cuda" if args.cuda and torch.cuda.is_available() else "cpu")

    obs_dim = obs_space.shape[0]
    agent = Agent(obs_dim, action_space, args.hidden_sizes, norm_obs, args.clip_obs).to(device)
    policy_params = [*agent.actor.parameters(), *([agent.actor_logstd] if continuous else [])]
    policy_optimizer = torch.optim.Adam(policy_params, lr=args.learning_rate, eps=1e-5, fused=True)
    critic_optimizer = torch.optim.Adam(agent.critic.parameters(), lr=args.vf_learning_rate, eps=1e-5, fused=True)
    optimizers = {"policy": policy_optimizer, "critic": critic_optimizer}
    reward_rms = RunningMeanStd(())
    if args.load_model:
        load_checkpoint(args.load_model, agent, optimizers, reward_rms, device)

    run_name, run_dir = make_run_dir(args.output_dir, args.env_id, args.exp_name, args.seed)
    config = run_config(args, {"norm_obs": norm_obs, "norm_reward": norm_reward}, device)
    with open(os.path.join(run_dir, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
    wandb_run = None
    if args.track:
        try:
            import wandb  # only tracking needs it

            wandb_run = wandb.init(project=args.wandb_project_name, entity=args.wandb_entity, config=asdict(args),
                                   name=run_name, dir=run_dir, save_code=True)
        except Exception as e:  # not installed, not logged in, offline, a bad WANDB_* setting, ...
            shutil.rmtree(run_dir, ignore_errors=True)  # the run never started: leave nothing behind
            raise ConfigError(f"--track: wandb could not start ({first_line(e)}); run `wandb login`, "
                              "or set WANDB_MODE=offline to log locally") from None
        wandb_run.define_metric("global_step")
        wandb_run.define_metric("*", step_metric="global_step")
    logger = MetricsLogger(os.path.join(run_dir, "metrics.jsonl"), wandb_run)
    print(f"{ALGO} {args.env_id} seed {args.seed} on {device} -> {run_dir}")

    batch_size = args.num_envs * args.num_steps
    minibatch_size = batch_size // args.vf_num_minibatches
    num_updates = args.total_timesteps // batch_size
    N, T = args.num_envs, args.num_steps
    action_shape = action_space.shape if continuous else ()
    if continuous:
        action_low, action_high = action_space.low, action_space.high

    # Rollout storage: what the networks see lives on the device; what the env returns stays on the
    # host until the rollout is over and then moves once.
    obs = torch.zeros((T, N, obs_dim), device=device)
    actions = torch.zeros((T, N, *action_shape), device=device, dtype=torch.float32 if continuous else torch.long)
    final_values = torch.zeros((T, N), device=device)
    raw_obs = np.zeros((T, N, obs_dim), dtype=np.float32)
    rewards = np.zeros((T, N), dtype=np.float64)
    terminations = np.zeros((T, N), dtype=bool)
    dones = np.zeros((T, N), dtype=bool)
    discounted_return = np.zeros(N, dtype=np.float64)

    envs = make_vector_env(args.env_id, N) if num_updates > 0 else None
    global_step, start_time, last_print = 0, time.time(), 0.0
    recent_returns: deque[float] = deque(maxlen=100)
    episodes = 0

    if envs is not None:
        next_obs, _ = envs.reset(seed=args.seed)
        envs.action_space.seed(args.seed)
        episode_return = np.zeros(N)
        episode_length = np.zeros(N, dtype=np.int64)

    for update in range(1, num_updates + 1):
        # ---- 1. Rollout with the fixed policy pi_0 (normalization statistics frozen) ------------
        final_values.zero_()
        for step in range(T):
            global_step += N
            raw_obs[step] = next_obs
            with torch.no_grad():
                x = agent.normalize(torch.as_tensor(next_obs, dtype=torch.float32, device=device))
                action = agent.sample(x)
            obs[step] = x
            actions[step] = action
            env_action = action.cpu().numpy()
            if continuous:
                env_action = np.clip(env_action, action_low, action_high)  # sampled unclipped, stored unclipped
            next_obs, reward, terminated, truncated, info = envs.step(env_action)
            rewards[step], terminations[step], dones[step] = reward, terminated, terminated | truncated
            episode_return += reward
            episode_length += 1

            # Truncated, not terminated: bootstrap with V(final observation), not V(next episode's start).
            cut = truncated & ~terminated
            if cut.any():
                idx = np.flatnonzero(cut)
                final_obs = np.stack(info["final_obs"][idx]).astype(np.float32)
                with torch.no_grad():
                    x_final = agent.normalize(torch.as_tensor(final_obs, device=device))
                    final_values[step, torch.as_tensor(idx, device=device)] = agent.value(x_final)
            if dones[step].any():
                for i in np.flatnonzero(dones[step]):
                    logger.log(global_step, {"charts/episodic_return": episode_return[i],
                                             "charts/episodic_length": episode_length[i]})
                    recent_returns.append(float(episode_return[i]))
                    episodes += 1
                episode_return[dones[step]] = 0.0
                episode_length[dones[step]] = 0

        # ---- 2. Advantages: A_t = G_t - V(s_t), G_t the reward-to-go, bootstrapped only at cuts ---
        if norm_reward:
            # r_t / std(R), R_t = gamma * R_{t-1} + r_t: one scale for the whole batch
            returns_stream = discounted_returns_stream(rewards, dones, discounted_return, args.gamma)
            reward_rms.update(torch.from_numpy(returns_stream.reshape(-1)))
            scale = float((reward_rms.var + 1e-8).sqrt())
            train_rewards = np.clip(rewards / scale, -args.clip_reward, args.clip_reward)
        else:
            train_rewards = rewards
        with torch.no_grad():
            # pi_0 and V did not change during the rollout: log pi_0(a|s) and V(s) in one pass over the batch
            logprobs = agent.log_prob_entropy(obs.reshape(-1, obs_dim), actions.reshape(-1, *action_shape))[0].view(T, N)
            values = agent.value(obs.reshape(-1, obs_dim)).view(T, N)
            last_value = agent.value(agent.normalize(torch.as_tensor(next_obs, dtype=torch.float32, device=device)))
            b_terminations = torch.as_tensor(terminations, dtype=torch.float32, device=device)
            b_dones = torch.as_tensor(dones, device=device)
            next_values = successor_values(values, last_value, final_values, b_dones)
            returns = reward_to_go(torch.as_tensor(train_rewards, dtype=torch.float32, device=device),
                                   next_values, b_terminations, b_dones.float(), args.gamma)
            advantages = returns - values if args.baseline else returns.clone()
        if norm_obs:
            b_raw_obs = torch.as_tensor(raw_obs.reshape(-1, obs_dim), device=device)
            agent.obs_rms.update(b_raw_obs)
            with torch.no_grad():
                # what the statistics update alone does to the acting policy (theta unchanged)
                normalizer_kl = agent.input_change_kl(obs.reshape(-1, obs_dim), agent.normalize(b_raw_obs)).item()

        # ---- 3. Policy: a few full-batch gradient steps on -(1/|S|) sum A log pi -----------------
        b_obs = obs.reshape(-1, obs_dim)
        b_actions = actions.reshape(-1, *action_shape)
        b_logprobs, b_advantages = logprobs.reshape(-1), advantages.reshape(-1)
        b_returns, b_values = returns.reshape(-1), values.reshape(-1)
        if args.norm_adv:
            b_advantages = normalize_advantages(b_advantages)
        policy_losses, grad_norms = [], []
        for epoch in range(args.update_epochs):
            newlogprob, _ = agent.log_prob_entropy(b_obs, b_actions)
            pg_loss = reinforce_loss(newlogprob, b_advantages)
            if not torch.isfinite(pg_loss):
                raise TrainingError(f"non-finite policy loss at update {update}, global step {global_step}; "
                                    "stopped before training on it")
            policy_optimizer.zero_grad()
            pg_loss.backward()
            grad_norms.append(nn.utils.clip_grad_norm_(policy_params, args.max_grad_norm))
            policy_optimizer.step()
            policy_losses.append(pg_loss.detach())

        # ---- 4. Critic: minibatch regression of V(s) on the returns, with its own optimizer -------
        value_losses = []
        for epoch in range(args.vf_update_epochs):
            # shuffle once per epoch; minibatches are consecutive slices of the shuffled batch
            perm = torch.randperm(batch_size, device=device)
            e_obs, e_returns = b_obs[perm], b_returns[perm]
            for start in range(0, batch_size, minibatch_size):
                mb = slice(start, start + minibatch_size)
                # L_V = 0.5 * mean[(V(s) - R)^2]
                v_loss = 0.5 * (agent.value(e_obs[mb]) - e_returns[mb]).square().mean()
                if not torch.isfinite(v_loss):
                    raise TrainingError(f"non-finite value loss at update {update}, global step {global_step}; "
                                        "stopped before training on it")
                critic_optimizer.zero_grad()  # grads to None: backward writes them fresh, nothing to zero
                v_loss.backward()
                critic_optimizer.step()
                value_losses.append(v_loss.detach())

        # ---- 5. Diagnostics of the update just made (policy after vs. before, whole batch) --------
        with torch.no_grad():
            newlogprob, entropy = agent.log_prob_entropy(b_obs, b_actions)
            kl = approx_kl(newlogprob - b_logprobs).item()
        sps = global_step / (time.time() - start_time)
        logger.log(global_step, {
            "charts/SPS": sps,
            **({"charts/normalizer_kl": normalizer_kl} if norm_obs else {}),
            "charts/learning_rate": policy_optimizer.param_groups[0]["lr"],
            "losses/policy_loss": torch.stack(policy_losses).mean().item(),
            "losses/value_loss": torch.stack(value_losses).mean().item(),
            "losses/entropy": entropy.mean().item(),
            "losses/approx_kl": kl,
            "losses/explained_variance": explained_variance(b_values, b_returns),
            "reinforce/grad_norm": torch.stack(grad_norms).mean().item(),
        })
        now = time.time()
        if now - last_print >= PROGRESS_EVERY_S or update == num_updates:
            last_print = now
            recent = f"{np.mean(recent_returns):.1f}" if recent_returns else "n/a"
            print(f"{ALGO} step {global_step}/{args.total_timesteps} ({100 * update / num_updates:.0f}%) "
                  f"| {sps:.0f} SPS | ETA {format_seconds((args.total_timesteps - global_step) / sps)} "
                  f"| return(100) {recent} | kl {kl:.4f}", flush=True)

    train_time = time.time() - start_time
    if envs is not None:
        envs.close()

    summary = {
        "algo": ALGO,
        "env_id": args.env_id,
        "seed": args.seed,
        "total_timesteps": args.total_timesteps,
        "global_step": global_step,
        "wall_time_s": round(train_time, 3),
        "sps": round(global_step / train_time, 1) if global_step else None,
        "episodes": episodes,
        "final_return_mean": float(np.mean(recent_returns)) if recent_returns else None,
        "sha256": config["sha256"],
    }
    if args.save_model:
        save_checkpoint(os.path.join(run_dir, "model.pt"), args, agent, optimizers, reward_rms, global_step)
    if args.eval_episodes > 0:
        video_dir = os.path.join(run_dir, "videos") if args.capture_video else None
        eval_returns = evaluate(agent, args.env_id, args.eval_episodes, args.seed, device, video_dir)
        for r in eval_returns:
            logger.log(global_step, {"eval/episodic_return": r})
        summary["eval_return_mean"] = float(np.mean(eval_returns))
        summary["eval_return_std"] = float(np.std(eval_returns))
    with open(os.path.join(run_dir, "summary.json"), "w") as f:
        json.dump(summary, f, indent=2)
    logger.close()
    if wandb_run is not None:
        wandb_run.summary.update({k: v for k, v in summary.items() if v is not None})
        wandb_run.finish()
    final = f"{summary['final_return_mean']:.1f}" if summary["final_return_mean"] is not None else "n/a"
    evaluation = f" | eval {summary['eval_return_mean']:.1f} +- {summary['eval_return_std']:.1f}" if "eval_return_mean" in summary else ""
    print(f"{ALGO} done: {global_step} steps in {format_seconds(train_time)} | final return(100) {final}{evaluation} | {run_dir}")
    return summary


if __name__ == "__main__":
    cli_args = tyro.cli(Args)
    try:
        main(cli_args)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except TrainingError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
