"""Trust Region Policy Optimization (TRPO) in one file.

Paper: Schulman et al., "Trust Region Policy Optimization", 2015, https://arxiv.org/abs/1502.05477

The algorithm
-------------
Repeat until `--total-timesteps` environment steps have been taken:

1. Collect a batch S of `num_envs * num_steps` transitions with the current policy pi_0 (= pi_old),
   and estimate advantages A_0(a, s) with GAE(lambda) and a learned value function V(s):

       delta_t = r_t + gamma * (1 - terminated_t) * V(s_{t+1}) - V(s_t)
       A_t     = delta_t + gamma * lambda * (1 - done_t) * A_{t+1}

   with V(final observation) as V(s_{t+1}) when a time limit cut the episode.
2. Solve the trust-region problem for the new policy pi_1 = pi_theta:

       maximize    L(theta) = (1/|S|) sum_i sum_t  pi_1(a_it | s_it) / pi_0(a_it | s_it) * A_0(a_it, s_it)
       subject to  KLbar(theta) = (1/|S|) sum_i sum_t KL(pi_0(.|s_it) || pi_1(.|s_it)) <= delta

   Linearize L around theta_0 (gradient g) and take the KL to second order (Fisher matrix F, the
   Hessian of KLbar at theta_0): maximize g^T d subject to 1/2 d^T F d <= delta. The Lagrangian
   gives d proportional to x = F^-1 g, the natural gradient.
   a. x from conjugate gradient on F x = g, using only Fisher-vector products F v = grad(grad(KLbar) . v)
      by double backpropagation: F is never formed.
   b. the largest step the quadratic model allows: beta = sqrt(2 delta / (x^T F x)), full step beta * x.
   c. backtracking line search on theta_0 + f^j * beta * x, j = 0, 1, ...: accept the first step whose
      surrogate L improves on L(theta_0) *and* whose measured KLbar <= delta; if none does, keep theta_0.
3. Fit the critic V to the returns A_0 + V_0 with Adam for a few epochs of minibatches.
4. Throw the batch away and collect fresh data with the updated policy.

The trust region holds end to end
---------------------------------
The promise is about the policies that act: pi_0, which collected batch k, and pi_1, which collects
batch k+1, are within delta of each other in mean KL over batch k's states, as functions of the *raw*
observation. Observation normalization is part of the policy, so updating its running statistics
changes the function pi computes even where theta does not move: late in InvertedPendulum-v4 that
change alone was measured at 1.2-1.4x delta per update, on top of a step that uses all of delta, and
the policy collapsed from a return of 1000 to under 150. Two things close that gap:
   a. The statistics update preserves the function (after the first batch, which replaces the
      placeholder statistics mean 0, std 1, so that the networks keep the scale their initialization
      assumes): the first layer of the actor and of the critic is rewritten as W' = W diag(s_1 / s_0),
      b' = b + W (m_1 - m_0) / s_0, so that W' x_1 + b' = W x_0 + b for x_i = (s - m_i) / s_i. The
      outputs on every raw observation stay the same, except where the +-clip binds.
   b. The KL of the line search is measured against pi_0's distribution parameters as they were
      stored when the batch was collected, on the batch's raw observations. The accepted step's KL is
      the total change between the two acting policies: the statistics update included, whatever the
      clip did, and `charts/normalizer_kl` logs the part the statistics update alone caused.
(b) alone, without (a), also keeps InvertedPendulum-v4 at 1000, but the statistics update then
spends part of each update's delta (up to 0.32 delta there), more where the statistics move fast,
and all of it once they move the policy by delta, when no step can be accepted; and the critic, which
no line search guards, still changes with them. (a) removes the change at its source, for both
networks; (b) makes the bound hold where (a) is not exact (the first batch, the clip). README:
"The trust region holds as a function of the raw observation" has the seeds and figures.

What the trust region does not do: once every episode reaches the time limit, the advantages carry
little signal (the returns differ only by the critic's errors and the reward noise), yet they are
normalized to unit variance and the step is scaled to reach the region's boundary, so the policy
still moves by about delta every update, in a direction that is largely noise. The trust region
bounds how far each such step goes, not whether it is worth taking, and a long run on a task it has
solved can drift away from the solution. No guard against this is built in; a smaller `--max-kl`
slows the drift, and `trpo/surrogate_improvement` shows when the steps stop paying.

Implementation details
----------------------
1. Vectorized environments (gymnasium 1.x `SyncVectorEnv`) in SAME_STEP autoreset mode: when an
   episode ends, `step` returns the first observation of the next episode and the final observation
   in `info["final_obs"]`; no transition is wasted or mixed across episodes.
2. Termination and truncation are kept apart. Terminated: no bootstrap. Truncated (time limit):
   bootstrap with V(final observation). The end of a batch is a cut, bootstrapped with V(next obs).
3. Separate actor and critic MLPs (64-64, tanh), orthogonal initialization (gain sqrt(2) hidden,
   0.01 for the policy head, 1 for the value head), zero biases. The policy's parameter vector
   theta holds the actor (and its log-std) only; the critic has its own optimizer.
4. Discrete actions: categorical policy over logits. Box actions: diagonal Gaussian with a
   state-independent log-std parameter; log-probs, entropies and KLs summed over action dimensions
   (and averaged over states); actions sampled unclipped, clipped only when stepping the env.
5. The KL is built against pi_0's distribution parameters *detached* from the graph: with a live
   pi_0 the KL would be identically 0 and so would F.
6. Advantages normalized over the batch (population std). Every division in CG and in the step
   size is guarded by a small epsilon; CG starts from x = 0 and stops early on a small residual.
7. Box-action environments by default: running observation normalization (clipped to +-10) and
   reward scaling by the running std of the discounted return (clipped to +-10). Observation
   statistics are frozen during a rollout and updated from the batch after it, function-preserving
   as above; they are part of the model: saved in `model.pt`, frozen in evaluation. Every network
   takes raw observations and normalizes them itself.
8. Logged per update: `trpo/kl_after_step`, the KL between the acting policies before and after
   the update; the surrogate improvement, the first-order improvement g . (theta_1 - theta_0) the
   step taken was expected to bring, the number of backtracks, whether a step was accepted, the
   final CG residual, approx_kl ((r - 1) - log r), `charts/normalizer_kl`, and the critic's loss
   and explained variance.

Usage: python trpo.py --env-id Hopper-v4      python trpo.py --help
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
from typing import Callable, NamedTuple, Optional

import gymnasium as gym
import numpy as np
import torch
import torch.nn as nn
import tyro

ALGO = "trpo"
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
    env_id: str = "Hopper-v4"
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
    gae_lambda: float = 0.95
    """GAE lambda, in (0, 1]"""
    norm_adv: bool = True
    """normalize advantages over the batch"""
    max_kl: float = 0.01
    """trust region size delta: the mean KL(pi_0 || pi_1) a step may reach"""
    cg_iters: int = 10
    """conjugate gradient iterations for F x = g (at most; each costs one Fisher-vector product)"""
    cg_damping: float = 0.1
    """damping added to the Fisher matrix: (F + damping * I) x = g"""
    cg_residual_tol: float = 1e-10
    """stop conjugate gradient once the squared residual falls below this"""
    backtrack_coef: float = 0.8
    """line search shrink factor f: steps beta * x * f^j, j = 0, 1, ..."""
    max_backtracks: int = 10
    """line search steps tried before the old policy is kept"""
    vf_learning_rate: float = 1e-3
    """Adam learning rate of the critic"""
    vf_update_epochs: int = 20
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
        (0 < args.gae_lambda <= 1, "--gae-lambda must be in (0, 1]"),
        (args.max_kl > 0, "--max-kl must be > 0"),
        (args.cg_iters > 0, "--cg-iters must be > 0"),
        (args.cg_damping >= 0, "--cg-damping must be >= 0"),
        (args.cg_residual_tol >= 0, "--cg-residual-tol must be >= 0"),
        (0 < args.backtrack_coef < 1, "--backtrack-coef must be in (0, 1)"),
        (args.max_backtracks > 0, "--max-backtracks must be > 0"),
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

    def std(self, eps: float = 1e-8) -> torch.Tensor:
        """sqrt(var + eps), the divisor of `normalize`."""
        return (self.var + eps).sqrt()

    def normalize(self, x: torch.Tensor, clip: float) -> torch.Tensor:
        """(x - mean) / std, clipped to [-clip, clip], in x's dtype."""
        return ((x - self.mean.to(x.dtype)) / self.std().to(x.dtype)).clamp(-clip, clip)


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


class PolicyDist(NamedTuple):
    """The parameters of pi(.|s) for a batch of states: (mean, log_std) of a diagonal Gaussian for
    Box actions, (logits, None) of a categorical for Discrete actions."""

    out: torch.Tensor
    log_std: Optional[torch.Tensor]


class Agent(nn.Module):
    """Separate actor and critic; the observation normalizer is part of the model, so every method
    takes raw observations.

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
        """The networks' input for raw observations."""
        return self.obs_rms.normalize(obs, self.clip_obs) if self.norm_obs else obs

    def value(self, obs: torch.Tensor) -> torch.Tensor:
        """V(s): shape (batch,)."""
        return self.critic(self.normalize(obs)).squeeze(-1)

    def dist(self, obs: torch.Tensor) -> PolicyDist:
        """pi(.|s)'s parameters; the one way the policy is evaluated."""
        out = self.actor(self.normalize(obs))
        return PolicyDist(out, self.actor_logstd if self.continuous else None)

    def sample(self, obs: torch.Tensor) -> torch.Tensor:
        """a ~ pi(.|s)."""
        out, log_std = self.dist(obs)
        if log_std is not None:
            return out + log_std.exp() * torch.randn_like(out)
        return torch.multinomial(out.softmax(-1), 1).squeeze(-1)

    def act_deterministic(self, obs: torch.Tensor) -> torch.Tensor:
        """The mode of pi(.|s): the Gaussian mean, or the most likely discrete action."""
        out, log_std = self.dist(obs)
        return out if log_std is not None else out.argmax(-1)

    def policy_parameters(self) -> list[nn.Parameter]:
        """theta: the actor's weights and, for Box actions, its log-std. Not the critic's."""
        return [*self.actor.parameters(), *([self.actor_logstd] if self.continuous else [])]

    @torch.no_grad()
    def update_obs_stats(self, obs: torch.Tensor) -> None:
        """Merge a batch of raw observations into the normalizer's statistics, keeping the actor's
        and the critic's outputs on every raw observation what they were (exact unless the clip
        binds). The first batch only replaces the placeholder statistics (mean 0, std 1): the
        networks then keep the input scale their initialization assumes."""
        first_batch = bool(self.obs_rms.count < 1)
        mean0, std0 = self.obs_rms.mean.clone(), self.obs_rms.std()
        self.obs_rms.update(obs)
        if not first_batch:
            mean1, std1 = self.obs_rms.mean, self.obs_rms.std()
            for first_layer in (self.actor[0], self.critic[0]):
                preserve_first_layer(first_layer, mean0, std0, mean1, std1)


# ---------------------------------------------------------------------------------------------
# TRPO math: small pure functions, tested in tests/test_trpo_math.py
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


def log_prob(dist: PolicyDist, action: torch.Tensor) -> torch.Tensor:
    """log pi(a|s) per state, shape (batch,)."""
    if dist.log_std is None:
        return categorical_log_prob(dist.out, action)
    return gaussian_log_prob(dist.out, dist.log_std, action)


def entropy(dist: PolicyDist) -> torch.Tensor:
    """H[pi(.|s)]: shape (batch,), or () for the Gaussian, whose entropy does not depend on s."""
    return categorical_entropy(dist.out) if dist.log_std is None else gaussian_entropy(dist.log_std)


def kl(dist0: PolicyDist, dist1: PolicyDist) -> torch.Tensor:
    """KL(pi_0(.|s) || pi_1(.|s)) per state, shape (batch,)."""
    if dist0.log_std is None:
        return categorical_kl(dist0.out, dist1.out)
    return gaussian_kl(dist0.out, dist0.log_std, dist1.out, dist1.log_std)


def detached(dist: PolicyDist) -> PolicyDist:
    """A copy of the distribution's parameters outside the graph: pi_0 for the KL and for F."""
    return PolicyDist(dist.out.detach().clone(), None if dist.log_std is None else dist.log_std.detach().clone())


@torch.no_grad()
def preserve_first_layer(layer: nn.Linear, mean0: torch.Tensor, std0: torch.Tensor,
                         mean1: torch.Tensor, std1: torch.Tensor) -> None:
    """Rewrite y = W x_0 + b as y = W' x_1 + b' for x_i = (s - m_i) / s_i, in place:
    W' = W diag(s_1 / s_0),  b' = b + W (m_1 - m_0) / s_0.  (The statistics are float64.)"""
    weight = layer.weight.double()
    layer.bias += (weight @ ((mean1 - mean0) / std0)).to(layer.bias.dtype)
    layer.weight.copy_(weight * (std1 / std0))


def successor_values(values: torch.Tensor, last_value: torch.Tensor, final_values: torch.Tensor,
                     dones: torch.Tensor) -> torch.Tensor:
    """V(s_{t+1}) for each step of a (T, N) rollout.

    Inside an episode it is the next step's value; where the episode ended at t (dones[t]) it is
    final_values[t] = V(final observation), because with autoreset the next row already holds the
    next episode's first observation; after the last step it is last_value = V(next observation).
    """
    return torch.where(dones, final_values, torch.cat([values[1:], last_value.unsqueeze(0)]))


def compute_gae(
    rewards: torch.Tensor,
    values: torch.Tensor,
    next_values: torch.Tensor,
    terminations: torch.Tensor,
    dones: torch.Tensor,
    gamma: float,
    gae_lambda: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """GAE(lambda) advantages and value targets for a (T, N) batch.

    next_values[t] = V(s_{t+1}), the true successor: V(final observation) where the episode ended at
    t, V(next observation) at the last step. terminations[t] = 1 where the episode reached a terminal
    state (no bootstrap); dones[t] = terminated or truncated (the GAE sum stops there).
    Returns (advantages, returns) with returns = advantages + values.
    """
    # delta_t = r_t + gamma * (1 - terminated_t) * V(s_{t+1}) - V(s_t)
    deltas = rewards + gamma * (1.0 - terminations) * next_values - values
    # A_t = delta_t + gamma * lambda * (1 - done_t) * A_{t+1};  A_T = 0 (the batch ends)
    decay = gamma * gae_lambda * (1.0 - dones)
    advantages = torch.zeros_like(deltas)
    next_advantage = torch.zeros_like(deltas[0])
    for t in reversed(range(deltas.shape[0])):
        next_advantage = deltas[t] + decay[t] * next_advantage
        advantages[t] = next_advantage
    return advantages, advantages + values


def normalize_advantages(advantages: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """(A - mean) / (std + eps) with the population std: one sample gives 0, never NaN."""
    return (advantages - advantages.mean()) / (advantages.std(correction=0) + eps)


def surrogate_objective(logratio: torch.Tensor, advantages: torch.Tensor) -> torch.Tensor:
    """L = mean[ pi_1(a|s) / pi_0(a|s) * A_0 ],  the ratio as exp(log pi_1 - log pi_0)."""
    return (logratio.exp() * advantages).mean()


def flat_params(params: list[torch.Tensor]) -> torch.Tensor:
    """theta as one vector (a copy)."""
    return torch.cat([p.detach().reshape(-1) for p in params])


@torch.no_grad()
def set_flat_params(params: list[torch.Tensor], flat: torch.Tensor) -> None:
    """Write the vector `flat` back into the parameters, in place and exactly."""
    offset = 0
    for p in params:
        p.copy_(flat[offset:offset + p.numel()].view_as(p))
        offset += p.numel()


def flat_grad(y: torch.Tensor, params: list[torch.Tensor], **kwargs) -> torch.Tensor:
    """dy/dtheta as one vector."""
    return torch.cat([g.reshape(-1) for g in torch.autograd.grad(y, params, **kwargs)])


def fisher_vector_product(grad_kl: torch.Tensor, params: list[torch.Tensor], v: torch.Tensor,
                          damping: float) -> torch.Tensor:
    """(F + damping * I) v with F the Hessian of the mean KL at theta_0, by double backprop:
    F v = d/dtheta [ (dKLbar/dtheta) . v ]. `grad_kl` must come from autograd.grad(..., create_graph=True)
    of a KL built against a *detached* pi_0; F itself is never formed."""
    return flat_grad(grad_kl @ v, params, retain_graph=True) + damping * v


def conjugate_gradient(Avp: Callable[[torch.Tensor], torch.Tensor], b: torch.Tensor, iters: int,
                       residual_tol: float = 1e-10, eps: float = 1e-20) -> tuple[torch.Tensor, float]:
    """Solve A x = b for symmetric positive-definite A given only v -> A v; x_0 = 0.

    At most `iters` products A v; stops once the squared residual is <= residual_tol. `eps` only
    guards against a division by zero: a larger one would bend the directions' conjugacy once the
    residuals are small. Returns x and the norm of the final residual b - A x.
    """
    x = torch.zeros_like(b)
    r = b.clone()  # residual b - A x
    p = b.clone()  # search direction
    rr = r @ r
    for _ in range(iters):
        if rr <= residual_tol:
            break
        Ap = Avp(p)
        alpha = rr / (p @ Ap + eps)  # step along p: alpha = r^T r / p^T A p
        x += alpha * p
        r -= alpha * Ap
        rr_new = r @ r
        p = r + (rr_new / (rr + eps)) * p  # next direction, A-conjugate to the previous ones
        rr = rr_new
    return x, float(rr.sqrt())


def max_step_size(xFx: torch.Tensor, max_kl: float, eps: float = 1e-8) -> torch.Tensor:
    """beta = sqrt(2 delta / (x^T F x)): the step beta * x reaches KLbar = delta under the quadratic model."""
    return torch.sqrt(2 * max_kl / (xFx + eps))


class LineSearchResult(NamedTuple):
    theta: torch.Tensor  # the accepted parameters, or theta_0 itself when nothing was accepted
    accepted: bool
    backtracks: int  # candidates rejected before the accepted one (all of them when none was)
    surrogate: float  # L at theta
    kl: float  # mean KL(pi_0 || pi_theta) at theta


def line_search(
    evaluate: Callable[[torch.Tensor], tuple[float, float]],
    theta0: torch.Tensor,
    full_step: torch.Tensor,
    surrogate0: float,
    max_kl: float,
    backtrack_coef: float,
    max_backtracks: int,
) -> LineSearchResult:
    """Backtracking line search on theta_0 + f^j * full_step, j = 0 .. max_backtracks - 1.

    `evaluate(theta)` returns (surrogate, mean KL from pi_0) at theta. The first candidate whose
    surrogate improves on surrogate0 and whose KL is <= max_kl, both finite, is accepted. When
    nothing is, theta is theta0 itself, unchanged, with surrogate0 and the KL evaluated at theta0
    (0 unless something besides theta changed the policy).
    """
    for j in range(max_backtracks):
        theta = theta0 + (backtrack_coef ** j) * full_step
        surrogate, kl = evaluate(theta)
        if math.isfinite(surrogate) and math.isfinite(kl) and kl <= max_kl and surrogate > surrogate0:
            return LineSearchResult(theta, True, j, surrogate, kl)
    return LineSearchResult(theta0, False, max_backtracks, surrogate0, evaluate(theta0)[1])


class PolicyBatch(NamedTuple):
    """What one policy step needs, for B states of the batch."""

    obs: torch.Tensor  # raw observations s, (B, obs_dim)
    actions: torch.Tensor  # a, as sampled by pi_0
    old_dist: PolicyDist  # pi_0(.|s), stored (detached) when the batch was collected
    old_logprobs: torch.Tensor  # log pi_0(a|s), (B,)
    advantages: torch.Tensor  # A_0(s, a), (B,), normalized or not


def trpo_policy_update(agent: Agent, batch: PolicyBatch, args: Args) -> dict:
    """One TRPO step on the actor: natural gradient by CG, maximal step, line search.

    pi_0 is the policy that collected the batch, as stored in `batch`, not the actor's current
    parameters: the KL that the line search bounds by `args.max_kl` is the whole change between the
    acting policies (a statistics update since the batch was collected included). Leaves the actor at
    the accepted parameters, or exactly at theta_0 when the line search fails. Returns diagnostics.
    """
    params = agent.policy_parameters()

    def surrogate_and_kl() -> tuple[torch.Tensor, torch.Tensor]:
        dist = agent.dist(batch.obs)
        logratio = log_prob(dist, batch.actions) - batch.old_logprobs
        return surrogate_objective(logratio, batch.advantages), kl(batch.old_dist, dist).mean()

    # g = grad L(theta_0);  grad KLbar(theta_0), kept differentiable for F v
    surrogate0, kl0 = surrogate_and_kl()
    if not torch.isfinite(surrogate0):
        raise TrainingError(f"non-finite surrogate objective ({surrogate0.item():.4g}); stopped before stepping on it")
    g = flat_grad(surrogate0, params, retain_graph=True)
    grad_kl = flat_grad(kl0, params, create_graph=True)

    # x = F^-1 g by conjugate gradient;  beta = sqrt(2 delta / x^T F x)
    def Fvp(v):
        return fisher_vector_product(grad_kl, params, v, args.cg_damping)

    x, cg_residual = conjugate_gradient(Fvp, g, args.cg_iters, args.cg_residual_tol)
    beta = max_step_size(x @ Fvp(x), args.max_kl)

    # theta = theta_0 + f^j * beta * x, first j with L(theta) > L(theta_0) and KLbar(theta) <= delta
    theta0 = flat_params(params)

    @torch.no_grad()
    def evaluate(theta: torch.Tensor) -> tuple[float, float]:
        set_flat_params(params, theta)
        surrogate, kl_mean = surrogate_and_kl()
        return surrogate.item(), kl_mean.item()

    result = line_search(evaluate, theta0, beta * x, surrogate0.item(), args.max_kl,
                         args.backtrack_coef, args.max_backtracks)
    set_flat_params(params, result.theta)
    return {
        "surrogate": result.surrogate,
        "surrogate_improvement": result.surrogate - surrogate0.item(),
        "expected_improvement": float(g @ (result.theta - theta0)),  # first order, of the step taken
        "kl_after_step": result.kl,
        "step_accepted": float(result.accepted),
        "line_search_backtracks": result.backtracks,
        "cg_residual": cg_residual,
        "step_size": float(beta),
    }


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


def save_checkpoint(path: str, args: Args, agent: Agent, optimizer: torch.optim.Optimizer,
                    reward_rms: RunningMeanStd, global_step: int) -> None:
    torch.save({
        "algo": ALGO,
        "args": asdict(args),
        "global_step": global_step,
        "norm_obs": agent.norm_obs,
        "agent": agent.state_dict(),
        "optimizer": optimizer.state_dict(),
        "reward_rms": reward_rms.state_dict(),
    }, path)


def load_checkpoint(path: str, agent: Agent, optimizer: torch.optim.Optimizer,
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
    optimizer.load_state_dict(checkpoint["optimizer"])
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
            action = agent.act_deterministic(torch.as_tensor(obs, dtype=torch.float32, device=device).unsqueeze(0))
            action = action[0].cpu().numpy()
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
    optimizer = torch.optim.Adam(agent.critic.parameters(), lr=args.vf_learning_rate, eps=1e-5, fused=True)  # critic only
    reward_rms = RunningMeanStd(())
    if args.load_model:
        load_checkpoint(args.load_model, agent, optimizer, reward_rms, device)

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
    obs = torch.zeros((T, N, obs_dim), device=device)  # raw observations s_t
    actions = torch.zeros((T, N, *action_shape), device=device, dtype=torch.float32 if continuous else torch.long)
    final_values = torch.zeros((T, N), device=device)  # V(final observation) where a time limit cut the episode
    rewards = np.zeros((T, N), dtype=np.float64)  # raw rewards
    terminations = np.zeros((T, N), dtype=bool)
    dones = np.zeros((T, N), dtype=bool)  # terminated or truncated
    discounted_return = np.zeros(N, dtype=np.float64)  # reward scaling's running R_t, per env

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
            obs[step] = torch.as_tensor(next_obs, dtype=torch.float32, device=device)
            with torch.no_grad():
                action = agent.sample(obs[step])
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
                    final_values[step, torch.as_tensor(idx, device=device)] = agent.value(torch.as_tensor(final_obs, device=device))
            if dones[step].any():
                for i in np.flatnonzero(dones[step]):
                    logger.log(global_step, {"charts/episodic_return": episode_return[i],
                                             "charts/episodic_length": episode_length[i]})
                    recent_returns.append(float(episode_return[i]))
                    episodes += 1
                episode_return[dones[step]] = 0.0
                episode_length[dones[step]] = 0

        # ---- 2. Advantages: GAE(lambda) with V(s_{t+1}) the true successor's value -------------
        if norm_reward:
            # r_t / std(R), R_t = gamma * R_{t-1} + r_t: one scale for the whole batch
            returns_stream = discounted_returns_stream(rewards, dones, discounted_return, args.gamma)
            reward_rms.update(torch.from_numpy(returns_stream.reshape(-1)))
            scale = float((reward_rms.var + 1e-8).sqrt())
            train_rewards = np.clip(rewards / scale, -args.clip_reward, args.clip_reward)
        else:
            train_rewards = rewards
        b_obs = obs.reshape(-1, obs_dim)
        b_actions = actions.reshape(-1, *action_shape)
        with torch.no_grad():
            # pi_0 and V did not change during the rollout: pi_0(.|s) and V(s) in one pass over the batch
            old_dist = detached(agent.dist(b_obs))
            b_logprobs = log_prob(old_dist, b_actions)
            values = agent.value(b_obs).view(T, N)
            last_value = agent.value(torch.as_tensor(next_obs, dtype=torch.float32, device=device))
            b_terminations = torch.as_tensor(terminations, dtype=torch.float32, device=device)
            b_dones = torch.as_tensor(dones, device=device)
            next_values = successor_values(values, last_value, final_values, b_dones)
            advantages, returns = compute_gae(
                torch.as_tensor(train_rewards, dtype=torch.float32, device=device),
                values, next_values, b_terminations, b_dones.float(), args.gamma, args.gae_lambda,
            )

        # ---- 3. Observation statistics: merge the batch, keeping pi and V the same functions of s --
        if norm_obs:
            agent.update_obs_stats(b_obs)
            with torch.no_grad():
                normalizer_kl = kl(old_dist, agent.dist(b_obs)).mean().item()

        # ---- 4. Policy: one trust-region step (natural gradient, maximal step, line search) ------
        b_advantages, b_returns, b_values = advantages.reshape(-1), returns.reshape(-1), values.reshape(-1)
        if args.norm_adv:
            b_advantages = normalize_advantages(b_advantages)
        step = trpo_policy_update(agent, PolicyBatch(b_obs, b_actions, old_dist, b_logprobs, b_advantages), args)

        # ---- 5. Critic: minibatch regression of V(s) on the returns, with its own optimizer -------
        b_x = agent.normalize(b_obs)  # the critic's input, normalized once for all its minibatches
        value_losses = []
        for epoch in range(args.vf_update_epochs):
            # shuffle once per epoch; minibatches are consecutive slices of the shuffled batch
            perm = torch.randperm(batch_size, device=device)
            e_x, e_returns = b_x[perm], b_returns[perm]
            for start in range(0, batch_size, minibatch_size):
                mb = slice(start, start + minibatch_size)
                # L_V = 0.5 * mean[(V(s) - R)^2]
                v_loss = 0.5 * (agent.critic(e_x[mb]).squeeze(-1) - e_returns[mb]).square().mean()
                if not torch.isfinite(v_loss):
                    raise TrainingError(f"non-finite value loss at update {update}, global step {global_step}; "
                                        "stopped before training on it")
                optimizer.zero_grad()  # grads to None: backward writes them fresh, nothing to zero
                v_loss.backward()
                optimizer.step()
                value_losses.append(v_loss.detach())

        # ---- 6. Diagnostics of the update just made (new policy vs. pi_0, whole batch) ------------
        with torch.no_grad():
            new_dist = agent.dist(b_obs)
            approx = approx_kl(log_prob(new_dist, b_actions) - b_logprobs).item()
        sps = global_step / (time.time() - start_time)
        logger.log(global_step, {
            "charts/SPS": sps,
            "charts/critic_learning_rate": optimizer.param_groups[0]["lr"],
            **({"charts/normalizer_kl": normalizer_kl} if norm_obs else {}),
            "losses/policy_loss": -step["surrogate"],
            "losses/value_loss": torch.stack(value_losses).mean().item(),
            "losses/entropy": entropy(new_dist).mean().item(),
            "losses/approx_kl": approx,
            "losses/explained_variance": explained_variance(b_values, b_returns),
            **{f"trpo/{key}": value for key, value in step.items() if key != "surrogate"},
        })
        now = time.time()
        if now - last_print >= PROGRESS_EVERY_S or update == num_updates:
            last_print = now
            recent = f"{np.mean(recent_returns):.1f}" if recent_returns else "n/a"
            print(f"{ALGO} step {global_step}/{args.total_timesteps} ({100 * update / num_updates:.0f}%) "
                  f"| {sps:.0f} SPS | ETA {format_seconds((args.total_timesteps - global_step) / sps)} "
                  f"| return(100) {recent} | kl {step['kl_after_step']:.4f} "
                  f"| backtracks {step['line_search_backtracks']}", flush=True)

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
        save_checkpoint(os.path.join(run_dir, "model.pt"), args, agent, optimizer, reward_rms, global_step)
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
