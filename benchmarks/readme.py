"""Write the results table into README.md from the committed reports' data.

    python benchmarks/readme.py

Reads benchmarks/results/{suite}/curves.json (written by run.py) and replaces the block between
`<!-- results:start -->` and `<!-- results:end -->` in README.md.
"""

from __future__ import annotations

import json
import os

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
START, END = "<!-- results:start -->", "<!-- results:end -->"


def cell(row: dict) -> str:
    finals = [f for f in row["final"] if f is not None]
    if not finals:
        return "not run"
    text = f"{np.mean(finals):.1f} ± {np.std(finals):.1f} ({len(finals)} seeds)"
    threshold = row["spec"].get("threshold")
    if threshold is not None:
        value = min(finals) if row["spec"].get("rule") == "each" else np.mean(finals)
        text += " ✓" if value >= threshold else f" ✗ (target {threshold})"
    return text


def table() -> str:
    lines = []
    for suite in ("quick", "mujoco"):
        path = os.path.join(ROOT, "benchmarks", "results", suite, "curves.json")
        if not os.path.exists(path):
            continue
        with open(path) as f:
            rows = json.load(f)
        algos = [a for a in ("ppo", "trpo", "reinforce") if any(r["algo"] == a and r["seeds"] for r in rows)]
        envs = sorted({r["env_id"] for r in rows if r["algo"] in algos})
        lines += [f"**{suite}** ([report](benchmarks/results/{suite}/report.md))", "",
                  "| env | steps | " + " | ".join(algos) + " |", "| --- | ---: |" + " ---: |" * len(algos)]
        for env in envs:
            by_algo = {r["algo"]: r for r in rows if r["env_id"] == env}
            steps = {by_algo[a]["spec"]["timesteps"] for a in algos if a in by_algo}
            steps_text = "/".join(f"{s:,}" for s in sorted(steps))
            cells = [cell(by_algo[a]) if a in by_algo else "-" for a in algos]
            lines.append(f"| {env} | {steps_text} | " + " | ".join(cells) + " |")
        lines += [""] + [f"![{e}](benchmarks/results/{suite}/{e}.png)" for e in envs] + [""]
    return "\n".join(lines)


def main() -> None:
    path = os.path.join(ROOT, "README.md")
    with open(path) as f:
        text = f.read()
    if START not in text or END not in text:
        raise SystemExit(f"error: README.md has no {START} ... {END} block")
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    with open(path, "w") as f:
        f.write(f"{head}{START}\n{table()}\n{END}{tail}")
    print(f"updated {path}")


if __name__ == "__main__":
    main()
