"""Tiny environments that exercise the scripts' error paths and loops; registered on import, so the
scripts can reach them with the `module:EnvName-vN` form (this folder on PYTHONPATH)."""

import os
import signal

import gymnasium as gym
import numpy as np


class NaNRewardEnv(gym.Env):
    """Box observations and actions; the reward turns NaN after a few steps."""

    observation_space = gym.spaces.Box(-1.0, 1.0, (3,), np.float32)
    action_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return np.zeros(3, np.float32), {}

    def step(self, action):
        self.t += 1
        reward = float("nan") if self.t > 5 else 0.0
        return np.zeros(3, np.float32), reward, False, self.t >= 20, {}


class OverflowRewardEnv(NaNRewardEnv):
    """Finite rewards so large (1e38) that float32 returns overflow: a non-finite loss from finite data."""

    def step(self, action):
        obs, reward, terminated, truncated, info = super().step(action)
        return obs, 1e38 if self.t > 5 else reward, terminated, truncated, info


class DictObsEnv(NaNRewardEnv):
    observation_space = gym.spaces.Dict({"x": gym.spaces.Box(-1.0, 1.0, (3,), np.float32)})


class ImageObsEnv(NaNRewardEnv):
    observation_space = gym.spaces.Box(0, 255, (8, 8, 3), np.uint8)


class MultiDiscreteActionEnv(NaNRewardEnv):
    action_space = gym.spaces.MultiDiscrete([2, 3])


class EmptyObsEnv(NaNRewardEnv):
    observation_space = gym.spaces.Box(-1.0, 1.0, (0,), np.float32)


class EmptyActionEnv(NaNRewardEnv):
    action_space = gym.spaces.Box(-1.0, 1.0, (0,), np.float32)


class DriftingObsEnv(gym.Env):
    """Observations whose offset and scale drift from episode to episode, so that running
    normalization statistics keep moving; the reward asks the policy to read the observation
    (act with the sign of the first coordinate's deviation), so moving statistics move the policy."""

    observation_space = gym.spaces.Box(-np.inf, np.inf, (3,), np.float32)
    action_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)

    def __init__(self):
        self.episode = 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t, self.episode = 0, self.episode + 1
        return self._observe(), {}

    def _observe(self):
        self.z = self.np_random.normal(size=3)
        return (2.0 * self.episode + (1.0 + 0.5 * self.episode) * self.z).astype(np.float32)

    def step(self, action):
        reward = float(np.clip(action[0], -1.0, 1.0) * np.sign(self.z[0]))
        self.t += 1
        return self._observe(), reward, False, self.t >= 16, {}


class ContactObsEnv(DriftingObsEnv):
    """A coordinate like a contact force: tiny (1e-3 z, whose sign the reward asks for) in each env's
    first 12 episodes, then 5 more in half of the states, which the old statistics clip, so that the
    rewrite leaves that coordinate out and the statistics update alone moves the policy a lot."""

    def _observe(self):
        self.z = self.np_random.normal(size=3)
        contact = 0.0 if self.episode <= 12 else 5.0 * float(self.np_random.random() < 0.5)
        return np.array([1e-3 * self.z[0] + contact, self.z[1], self.z[2]], np.float32)


class ProbeEnv(gym.Env):
    """Deterministic episodes of 3 to 6 steps that end by termination, by truncation, or both at once,
    in turn. The first coordinate of the observation tells every state of an env apart
    (0.5 * episode + 0.05 * t, plus an offset per env), so a test that sets V(s) = s[0] knows which
    state any value came from. Each env, keyed by the seed of its first reset, records its
    transitions (obs, action, reward, terminated, truncated, next or final obs) in TRANSITIONS."""

    observation_space = gym.spaces.Box(-np.inf, np.inf, (2,), np.float32)
    action_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)
    TRANSITIONS: dict = {}

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        if seed is not None:
            self.key, self.episode = seed, 0
            ProbeEnv.TRANSITIONS[seed] = []
        else:
            self.key, self.episode = getattr(self, "key", -1), getattr(self, "episode", -1) + 1
        self.t, self.length = 0, 3 + (self.key + self.episode) % 4
        self.obs = self._observe()
        return self.obs, {}

    def _observe(self):
        return np.array([0.2 * (self.key % 3) + 0.5 * self.episode + 0.05 * self.t, 1.0], np.float32)

    def step(self, action):
        self.t += 1
        reward = 1.0 + 0.5 * self.t + 0.1 * (self.key % 3)
        end, kind = self.t >= self.length, self.episode % 3
        terminated, truncated = end and kind in (0, 2), end and kind in (1, 2)
        obs, self.obs = self.obs, self._observe()
        if self.key in ProbeEnv.TRANSITIONS:
            ProbeEnv.TRANSITIONS[self.key].append((obs, np.array(action), reward, terminated, truncated, self.obs))
        return self.obs, reward, terminated, truncated, {}


class DiscreteProbeEnv(ProbeEnv):
    action_space = gym.spaces.Discrete(2)


class BanditEnv(gym.Env):
    """One-step episodes from the observation 0 (so every network layer outputs its bias, 0 at
    initialization, and V = 0): the reward is the action, so an action's advantage is known.
    Records (action, reward) per env like ProbeEnv."""

    observation_space = gym.spaces.Box(-1.0, 1.0, (3,), np.float32)
    action_space = gym.spaces.Box(-10.0, 10.0, (1,), np.float32)
    TRANSITIONS: dict = {}

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        if seed is not None:
            self.key = seed
            BanditEnv.TRANSITIONS[seed] = []
        return np.zeros(3, np.float32), {}

    def step(self, action):
        reward = float(np.asarray(action).reshape(-1)[0]) if self.action_space.shape else (1.0 if action == 1 else -1.0)
        if getattr(self, "key", None) in BanditEnv.TRANSITIONS:
            BanditEnv.TRANSITIONS[self.key].append((np.array(action), reward))
        return np.zeros(3, np.float32), reward, True, False, {}


class DiscreteBanditEnv(BanditEnv):
    action_space = gym.spaces.Discrete(2)


class ZeroRewardEnv(BanditEnv):
    """BanditEnv without reward: every advantage is 0, only an entropy bonus moves the policy."""

    def step(self, action):
        return np.zeros(3, np.float32), 0.0, True, False, {}


class DiscreteStartOneEnv(NaNRewardEnv):
    action_space = gym.spaces.Discrete(3, start=1)


class EndlessEnv(gym.Env):
    """Never terminates and has no time limit (registered without max_episode_steps)."""

    observation_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
    action_space = gym.spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return np.zeros(2, np.float32), {}

    def step(self, action):
        return np.zeros(2, np.float32), 1.0, False, False, {}


class SelfSignalEnv(gym.Env):
    """Pendulum-like noise with Box actions and 25-step episodes, which sends its own process a real
    signal when the process has taken SELF_SIGNAL_AT env steps in all (SELF_SIGNAL = INT or TERM; a
    comma-separated list of steps sends one signal per step): a deterministic way to interrupt a
    training run at a known point. The reward of the process's env step NAN_REWARD_AT is NaN; the
    observation it returns at step NONFINITE_OBS_AT has an inf (Box actions) or a NaN (Discrete)."""

    observation_space = gym.spaces.Box(-np.inf, np.inf, (3,), np.float32)
    action_space = gym.spaces.Box(-2.0, 2.0, (1,), np.float32)
    steps_in_process = 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return self.np_random.normal(size=3).astype(np.float32), {}

    def step(self, action):
        self.t += 1
        SelfSignalEnv.steps_in_process += 1
        at = [int(s) for s in os.environ.get("SELF_SIGNAL_AT", "").split(",") if s]
        if SelfSignalEnv.steps_in_process in at:
            os.kill(os.getpid(), getattr(signal, "SIG" + os.environ.get("SELF_SIGNAL", "INT")))
        obs = self.np_random.normal(size=3).astype(np.float32)
        reward = float(-np.square(action).sum() + obs[0])
        if str(SelfSignalEnv.steps_in_process) == os.environ.get("NAN_REWARD_AT"):
            reward = float("nan")
        if str(SelfSignalEnv.steps_in_process) == os.environ.get("NONFINITE_OBS_AT"):
            obs[2] = np.inf if isinstance(self.action_space, gym.spaces.Box) else np.nan
        return obs, reward, False, self.t >= 25, {}


class DiscreteSelfSignalEnv(SelfSignalEnv):
    action_space = gym.spaces.Discrete(2)


for name, cls in [("NaNReward-v0", NaNRewardEnv), ("DictObs-v0", DictObsEnv),
                  ("ImageObs-v0", ImageObsEnv), ("MultiDiscreteAction-v0", MultiDiscreteActionEnv),
                  ("EmptyObs-v0", EmptyObsEnv), ("EmptyAction-v0", EmptyActionEnv),
                  ("DriftingObs-v0", DriftingObsEnv), ("ContactObs-v0", ContactObsEnv),
                  ("OverflowReward-v0", OverflowRewardEnv), ("DiscreteSelfSignal-v0", DiscreteSelfSignalEnv),
                  ("Probe-v0", ProbeEnv), ("DiscreteProbe-v0", DiscreteProbeEnv), ("Bandit-v0", BanditEnv),
                  ("DiscreteBandit-v0", DiscreteBanditEnv), ("ZeroReward-v0", ZeroRewardEnv),
                  ("DiscreteStartOne-v0", DiscreteStartOneEnv), ("Endless-v0", EndlessEnv),
                  ("SelfSignal-v0", SelfSignalEnv)]:
    gym.register(id=name, entry_point=cls, disable_env_checker=True)
