"""Write the results table into README.md from the committed records.

    python benchmarks/readme.py

Reads benchmarks/results/{suite}/runs.jsonl (written by run.py) and thresholds.json, and replaces
the block between `<!-- results:start -->` and `<!-- results:end -->` in README.md with, per suite,
env and script, the IQM [95% CI] over seeds of the training and of the evaluation return.
"""

from __future__ import annotations

import importlib.util
import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
START, END = "<!-- results:start -->", "<!-- results:end -->"
_spec = importlib.util.spec_from_file_location("bench_run", os.path.join(ROOT, "benchmarks", "run.py"))
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)


def table() -> str:
    lines = []
    for suite, config in bench.load_suites().items():
        records = bench.read_records(os.path.join(bench.BENCH, "results", suite, "runs.jsonl"))
        previous = os.path.join("benchmarks", "results", "previous", suite, "report.md")
        if not os.path.exists(os.path.join(ROOT, previous)):
            previous = None
        if not records:
            if previous:
                lines += [f"**{suite}**: no run of the current scripts recorded yet; the last report, made by older "
                          f"versions of the scripts with mean ± std over 3–10 seeds, is [{previous}]({previous}).", ""]
            continue
        code, mixed = bench.code_of(records)
        scripts = ", ".join(f"{algo}.py {sha[:12]}" for algo, shas in code.items() for sha in shas)
        algos = [a for a in bench.ALGOS if any(r["algo"] == a for r in records)]
        lines += [f"**{suite}** ([report](benchmarks/results/{suite}/report.md); scripts by sha256: {scripts}"
                  + (", MIXED" if mixed else "") + "): IQM [95% CI] over seeds, training return / deterministic evaluation return", "",
                  "| env | steps | seeds | " + " | ".join(algos) + " |", "| --- | ---: | ---: |" + " ---: |" * len(algos)]
        not_run = False
        for env_id in sorted(config):
            cells, steps, seeds = [], set(), set()
            for algo in algos:
                spec = config[env_id].get(algo)
                mine = [r for r in records if r["env_id"] == env_id and r["algo"] == algo
                        and spec and r["timesteps"] == spec["timesteps"]]
                if not mine:
                    cells.append("not run")
                    not_run = True
                    continue
                steps.add(spec["timesteps"])
                seeds.add(len(mine))
                train = bench.seed_stats([r["final_return_mean"] for r in mine])
                evaluation = bench.seed_stats([r["eval_return_mean"] for r in mine])
                verdict = bench.verdict(spec, train, len(mine), [r["final_return_mean"] for r in mine])
                mark = {"PASS": " ✓", "FAIL": f" ✗ (target {spec.get('threshold')})"}.get(verdict, "")
                cells.append(f"{bench.cell(train, 0)} / {bench.cell(evaluation, 0)}{mark}")
            lines.append(f"| {env_id} | {'/'.join(f'{s:,}' for s in sorted(steps))} | "
                         f"{'/'.join(map(str, sorted(seeds)))} | " + " | ".join(cells) + " |")
        if previous and not_run:
            lines += ["", f"Envs and scripts not run yet: see the report of older versions of the scripts "
                          f"(mean ± std over 3–10 seeds), [{previous}]({previous})."]
        lines += [""] + [f"![{e}](benchmarks/results/{suite}/{bench.file_name(e)}.png)" for e in sorted(config)
                         if any(r["env_id"] == e for r in records)] + [""]
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
