"""Write the results table into README.md from the committed records.

    python benchmarks/readme.py

Reads benchmarks/results/{suite}/runs.jsonl (written by run.py) and thresholds.json, and replaces
the block between `<!-- results:start -->` and `<!-- results:end -->` in README.md with, per suite,
env and script, the IQM [95% CI] over seeds of the training and of the evaluation return: the rows
of run.py's report (`summarize`), each judged on the runs it has; then, per suite, each row beside
its reference figure (thresholds.json), on the metric that reference reports, and where that figure
lies against the row's interval.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
START, END = "<!-- results:start -->", "<!-- results:end -->"
_spec = importlib.util.spec_from_file_location("bench_run", os.path.join(ROOT, "benchmarks", "run.py"))
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)
MARKS = {"PASS": " ✓", "FAIL": " ✗ (target {threshold})"}


def replayed(suite: str, algo: str, sha: str, records: list[dict]) -> str:
    """What the suite's replay.json (benchmarks/replay.py) says of the runs that the file with this
    sha256 made, run again by the current file: '' when it has none. A row compared with the record
    itself (replay.py's `against` "records"; both runs on the record's machine) made that run again;
    a row compared with the previous file's run on one machine ("other runs") shows only that the two
    files make the same runs there."""
    path = os.path.join(ROOT, "benchmarks", "results", suite, "replay.json")
    if not os.path.exists(path):
        return ""
    with open(path) as f:
        runs = [r for r in json.load(f)["runs"] if r["algo"] == algo and r["recorded"]["sha256"] == sha
                and r["replayed"]["sha256"] == bench.script_sha256(algo) and not r.get("flags")]
    machine_of = {(r["env_id"], r["seed"]): r.get("machine") for r in records if r["algo"] == algo and r["sha256"] == sha}

    def remade(row: dict) -> bool:  # compared with the record itself: both runs on the record's machine
        machine = machine_of.get((row.get("env_id"), row["seed"]))
        return (row.get("against", "records") == "records" and machine is not None
                and row["recorded"].get("machine") == row["replayed"].get("machine") == machine)

    again = [r for r in runs if remade(r)]
    elsewhere = [r for r in runs if r.get("against") == "other runs" and r["recorded"].get("machine")
                 and r["recorded"].get("machine") == r["replayed"].get("machine")]
    link = f"[replay](benchmarks/results/{suite}/replay.md)"
    said = []
    if again:
        said.append(f"the current file made {sum(not r['differs'] for r in again)} of {len(again)} of these runs "
                    f"again identically, {link}")
    for machine in sorted({r["recorded"]["machine"] for r in elsewhere}):
        rows = [r for r in elsewhere if r["recorded"]["machine"] == machine]
        said.append(f"on {machine}, the current file and this one each ran {len(rows)} of these (env, seed) and "
                    f"made {sum(not r['differs'] for r in rows)} of {len(rows)} runs identically, {link}")
    return "".join(f"; {s}" for s in said)


def suite_table(suite: str, config: dict, records: list[dict], previous: str | None) -> list[str]:
    """The lines of one suite: header, table (a cell per env and script), plots."""
    records = bench.at_budget(records, config)
    if not records:
        return ([f"**{suite}**: no run of the current scripts recorded yet; the last report, made by older versions "
                 f"of the scripts, is [{previous}]({previous}).", ""] if previous else [])
    code, mixed = bench.code_of(records)
    scripts = ", ".join(f"{algo}.py {sha[:12]}" + ("" if sha == bench.script_sha256(algo) else
                                                   f" (not the current file{replayed(suite, algo, sha, records)})")
                        for algo, shas in code.items() for sha in shas)
    algos = [a for a in bench.ALGOS if a in code]
    rows = {(row["env_id"], row["algo"]): row for row in bench.summarize(config, records, None)}
    lines = [f"**{suite}** ([report](benchmarks/results/{suite}/report.md); scripts by sha256: {scripts}"
             + (", MIXED" if mixed else "") + "): IQM [95% CI] over seeds, training return / deterministic evaluation return", "",
             "| env | steps | seeds | " + " | ".join(algos) + " |", "| --- | ---: | ---: |" + " ---: |" * len(algos)]
    not_run = False
    for env_id in sorted(config):
        cells, steps, seeds = [], set(), set()
        for algo in algos:
            row = rows.get((env_id, algo))
            if row is None or not row["records"]:
                cells.append("not run")
                not_run = True
                continue
            steps.add(row["spec"]["timesteps"])
            seeds.add(len(row["records"]))
            mark = MARKS.get(row["verdict"], "").format(threshold=row["spec"].get("threshold"))
            cells.append(f"{bench.cell(row['stats']['train'], 0)} / {bench.cell(row['stats']['eval'], 0)}{mark}")
        lines.append(f"| {env_id} | {'/'.join(f'{s:,}' for s in sorted(steps))} | "
                     f"{'/'.join(map(str, sorted(seeds)))} | " + " | ".join(cells) + " |")
    lines += ["", *reference_table(algos, rows)]
    if previous and not_run:
        lines += ["", f"Envs and scripts not run yet with the current scripts: see the last report of older versions "
                      f"of the scripts, [{previous}]({previous})."]
    return lines + [""] + [f"![{e}](benchmarks/results/{suite}/{bench.file_name(e)}.png)" for e in sorted(config)
                           if any(r["env_id"] == e for r in records)] + [""]


def reference_place(stats: dict, reference: float) -> str:
    """Where a reference figure lies against an interval of ours: only outside it is there a difference."""
    if reference < stats["low"]:
        return "higher: the reference is below the interval"
    if reference > stats["high"]:
        return "**lower: the reference is above the interval**"
    return "no difference shown: the reference is inside the interval"


def reference_table(algos: list[str], rows: dict) -> list[str]:
    """Each row that has runs, beside each of its reference figures (thresholds.json: `reference_return`,
    then `other_references`), on the metric that figure reports."""
    lines = []
    for env_id, algo in sorted(rows, key=lambda key: (key[0], algos.index(key[1]) if key[1] in algos else len(algos))):
        row, spec = rows[env_id, algo], rows[env_id, algo]["spec"]
        if algo not in algos or not row["records"]:
            continue
        figures = [] if spec.get("reference_return") is None else [
            (spec.get("reference", "").split(" (")[0], spec["reference_return"], spec.get("reference_metric", "train"))]
        figures += [(o["reference"].split(" (")[0], o["return"], o.get("metric", "train")) for o in spec.get("other_references", [])]
        for source, figure, metric in figures:
            stats = row["stats"][metric]
            if stats is not None:
                lines.append(f"| {env_id} | {algo} | {source} | {'training' if metric == 'train' else 'evaluation'} | "
                             f"{bench.cell(stats, 0)} | {reference_place(stats, figure)} |")
    if not lines:
        return []
    return ["Against the reference figures (other machines, often other env versions, budgets and fewer seeds), each on "
            "the metric it reports (ours is the final return; a \"max of curve\" reference is the best point of its "
            "curve, which favours it):", "", "| env | script | reference | metric | ours: IQM [95% CI] | ours against it |",
            "| --- | --- | --- | --- | ---: | --- |", *lines]


def table() -> str:
    lines = []
    for suite, config in bench.load_suites().items():
        records = bench.read_records(os.path.join(bench.BENCH, "results", suite, "runs.jsonl"))
        previous = os.path.join("benchmarks", "results", "previous", suite, "report.md")
        lines += suite_table(suite, config, records, previous if os.path.exists(os.path.join(ROOT, previous)) else None)
    return "\n".join(lines)


def main() -> None:
    argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog="It takes no flags.").parse_args()
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
