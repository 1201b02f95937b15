"""Where a program's time goes in the batch sandbox (`sandbox.judge_many`): per-phase CPU and
wall time of the batch's init, each program's supervisor and its runner, before and after.

    python bench/sandbox_phases.py [--before REV] [--programs 128] [--batch 64] [--out FILE.json]

For each side ("before": `scope_lib/grading/` as of `--before`, read with `git show`; "after":
this checkout's) the grading package is copied into a private package whose inside files
(sandbox_inside_supervisor.py, sandbox_inside_runner.py) get time stamps written to their stderr
at the phase boundaries (`time.monotonic()` and the process's CPU clock), and `--programs`
programs of the tiny code world (reference programs, a third of them made wrong or not
compiling) are judged in batches of `--batch`, one after the other on one thread. The stamps
come back in each program's stderr (supervisor, runner) and the sandbox's own (init). Nothing of
this is in the sandbox that grades rewards: the copies are made for this run only.

Per side it prints and writes the median per program of: the phases' wall time, the CPU of each
process up to its last stamp, and the CPU of the whole sandbox (the host's reaped children, the
launch included) and of the host.
"""

from __future__ import annotations

import argparse
import collections
import datetime
import importlib
import json
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from reward_overlap import BEFORE, _git, _uptime, kept_sandbox_cpu  # noqa: E402
from scope_lib.common.machine import cpu_model  # noqa: E402

_STAMP = '''
def _stamp(name):
    try:
        os.write(2, ("PHASE %s %.6f %.6f\\n" % (name, time.monotonic(), time.process_time())).encode())
    except OSError:
        pass

'''
# (anchor, text put before it[, "replace": text put instead]) in sandbox_inside_supervisor.py;
# each anchor must occur once.
_SUPERVISOR = [
    ("\ndef _reap_orphans() -> None:", _STAMP),
    ("    command_r, command_w = os.pipe()\n    reply_r, reply_w = os.pipe()\n    runner_pid = os.fork()\n",
     "    _stamp('S_start')\n"),
    ("            _close_all_but(0, 1, 2, command_r, reply_w)", "            _stamp('R_start')\n"),
    ("            _become_program(config)\n", "            _stamp('R_closed')\n"),
    ("            status = _runner(command_r, reply_w, config)\n", "            _stamp('R_became')\n"),
    ("    # 2. The supervisor gives up root too", "    _stamp('S_forked')\n"),
    ("    # 3. Read the request", "    _stamp('S_uid')\n"),
    ("    report_fd = config[\"report_fd\"]\n    nonce, mode", "    _stamp('S_request')\n"),
    ("    if mode == \"run\":\n        status = _wait_child", "    _stamp('S_sent')\n"),
    ("            elif spec[\"kind\"] == \"stdio\":\n", "            elif (_stamp('S_loaded') or True) and spec[\"kind\"] == \"stdio\":\n", "replace"),
    ("    report[\"seconds\"] = round(time.monotonic() - started, 4)\n", "    _stamp('S_tested')\n"),
    ("        if not _write_atomic_frame(report_fd, {\"event\": \"started\"", "        _stamp('I_begin')\n"),
    ("        deadline = started + float(item[\"backstop\"])\n", "        _stamp('I_forked')\n"),
    ("        problem = _restore_sandbox(tmp_state)\n", "        _stamp('I_reaped')\n"),
    ("        for fd in (item[\"stdout_fd\"], item[\"stderr_fd\"]):\n            os.close(fd)\n", "        _stamp('I_restored')\n"),
    ("        if problem:\n            return 3\n", "        _stamp('I_done')\n"),
]
_RUNNER = [
    ("    if mode == \"run\":  # plain run", "    os.write(2, ('PHASE R_got %.6f %.6f\\n' % (time.monotonic(), time.process_time())).encode())\n"),
    ("    _flush_program_output()\n    _write_frame(reply_fd, {\"loaded\": True})\n",
     "    os.write(2, ('PHASE R_loaded %.6f %.6f\\n' % (time.monotonic(), time.process_time())).encode())\n"),
]
# Wall-time phases: (from, to, what happens).
PHASES = [
    ("I_begin", "S_start", "init: 'started' frame, fork of the program's supervisor"),
    ("S_start", "S_forked", "supervisor: fork of the runner (and, before, its imports)"),
    ("S_forked", "S_uid", "supervisor: uid switch, rlimits"),
    ("S_uid", "S_request", "supervisor: its request read from the batch's file"),
    ("S_request", "S_sent", "supervisor: the program sent to the runner"),
    ("S_start", "R_start", "runner: started (fork)"),
    ("R_start", "R_closed", "runner: every other descriptor closed"),
    ("R_closed", "R_became", "runner: imports, uid switch, rlimits"),
    ("R_got", "R_loaded", "runner: program compiled and loaded"),
    ("S_sent", "S_loaded", "supervisor: waiting until the program is loaded"),
    ("S_loaded", "S_tested", "supervisor: the test cases"),
    ("S_tested", "I_reaped", "report written, supervisor exits, init reaps it"),
    ("I_reaped", "I_restored", "init: every other process killed, /tmp emptied, checks"),
    ("I_restored", "I_done", "init: output pipes closed, 'done' frame"),
    ("I_begin", "I_done", "one program in all"),
]


def _patch(text: str, patches: list[tuple], where: str) -> str:
    for anchor, insert, *how in patches:
        if text.count(anchor) != 1:
            raise SystemExit(f"{where}: the anchor {anchor.strip()[:60]!r} occurs {text.count(anchor)} times; "
                             "update bench/sandbox_phases.py to the inside files")
        text = text.replace(anchor, insert if how == ["replace"] else insert + anchor)
    return text


def instrumented_grading(rev: str | None, name: str):
    """`scope_lib.grading` of commit `rev` (None: this checkout) with stamped inside files, as `name`."""
    folder = Path(tempfile.mkdtemp(prefix="sandbox-phases-")) / name
    folder.mkdir()
    source = ROOT / "scope_lib" / "grading"
    paths = _git("ls-tree", "--name-only", rev, "scope_lib/grading/").split() if rev else \
        [f"scope_lib/grading/{p.name}" for p in source.glob("*.py")]
    for path in paths:
        if not path.endswith(".py"):
            continue
        text = _git("show", f"{rev}:{path}") if rev else (ROOT / path).read_text()
        file = Path(path).name
        if file == "sandbox_inside_supervisor.py":
            text = _patch(text, _SUPERVISOR, file)
        elif file == "sandbox_inside_runner.py":
            text = _patch(text, _RUNNER, file)
        (folder / file).write_text(text.replace("scope_lib.grading", name))
    sys.path.insert(0, str(folder.parent))
    try:
        return importlib.import_module(name)
    finally:
        sys.path.remove(str(folder.parent))


def programs(count: int) -> tuple[list[str], list[dict]]:
    """Tiny-code-world programs: reference solutions, 30% made wrong, 10% made not to compile."""
    from scope_lib.grading.code import CodeTests
    from scope_lib.worlds import code as world

    problems = world.train_pool(64, seed=1)
    rng = random.Random(0)
    sources, specs = [], []
    for i in range(count):
        problem = problems[i % len(problems)]
        source, draw = problem.solution, rng.random()
        if draw < 0.3:
            source = source.replace("return x", "return x + 1")
        elif draw < 0.4:
            source = source.replace("def f(x):", "def f(x:")
        sources.append(source + f"\n# {i}\n")
        specs.append(CodeTests.from_json(problem.answer).spec())
    return sources, specs


def _stamps(text: str) -> dict[str, tuple[float, float]]:
    out = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 4 and parts[0] == "PHASE":
            out[parts[1]] = (float(parts[2]), float(parts[3]))
    return out


def profile(grading, sources: list[str], specs: list[dict], batch: int) -> dict:
    sandbox = grading.sandbox
    sandbox.check_isolation()
    prepared = [sandbox._judge_request(s, t, 2.0) for s, t in zip(sources, specs)]
    wall = collections.defaultdict(list)
    cpu = collections.defaultdict(list)
    per_batch = collections.defaultdict(list)
    for first in range(0, len(prepared), batch):
        entries = prepared[first:first + batch]
        kept_before, before = kept_sandbox_cpu(grading), os.times()
        start = time.monotonic()
        verdicts, not_started, sandbox_stderr = sandbox._execute_batch(entries, sandbox.Limits())
        seconds = time.monotonic() - start
        kept_after, after = kept_sandbox_cpu(grading), os.times()
        if not_started:
            raise SystemExit(f"{len(not_started)} programs were not started: {sandbox_stderr[-500:]}")
        n = len(entries)
        per_batch["sandbox_cpu_ms_per_program"].append(1e3 * (after.children_user + after.children_system + kept_after
                                                              - before.children_user - before.children_system - kept_before) / n)
        per_batch["host_cpu_ms_per_program"].append(1e3 * (after.user + after.system - before.user - before.system) / n)
        per_batch["wall_ms_per_program"].append(1e3 * seconds / n)
        init_lines = [line for line in sandbox_stderr.splitlines() if line.startswith("PHASE I_")]
        init_per_program, current = [], None
        for line in init_lines:  # the init's stamps, program after program
            name, t, c = line.split()[1], float(line.split()[2]), float(line.split()[3])
            if name == "I_begin":
                current = {}
                init_per_program.append(current)
            if current is not None:
                current[name] = (t, c)
        per_batch["launch_to_first_program_ms"].append(1e3 * (init_per_program[0]["I_begin"][0] - start))
        for index, stamps_init in enumerate(init_per_program):
            stamps = dict(stamps_init)
            stamps.update(_stamps(verdicts[index].stderr))
            for a, b, _ in PHASES:
                if a in stamps and b in stamps:
                    wall[f"{a}->{b}"].append(1e3 * (stamps[b][0] - stamps[a][0]))
            # CPU clocks: the init's runs on; the supervisor's and runner's start at their fork.
            cpu["init, per program"].append(1e3 * (stamps["I_done"][1] - stamps["I_begin"][1]))
            for name, last in (("supervisor", "S_tested"), ("runner", "R_loaded")):
                if last in stamps:
                    cpu[f"{name}, to {last}"].append(1e3 * stamps[last][1])
            for name in ("S_start", "S_forked", "S_uid", "S_request", "S_sent", "S_loaded", "R_start", "R_closed", "R_became",
                         "R_got"):
                if name in stamps:
                    cpu[f"at {name}"].append(1e3 * stamps[name][1])
    median = lambda d: {k: round(statistics.median(v), 3) for k, v in d.items()}  # noqa: E731
    return {"wall_ms": median(wall), "cpu_ms": median(cpu), "per_batch": median(per_batch)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", default=BEFORE)
    parser.add_argument("--programs", type=int, default=128)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=2, help="before, after, before, after, ... this many times")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    sources, specs = programs(args.programs)
    sides = {"before": instrumented_grading(args.before, "_phases_before"), "after": instrumented_grading(None, "_phases_after")}
    results = {"date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"), "machine": cpu_model(),
               "cores": os.cpu_count(), "uptime_start": _uptime(), "before": _git("rev-parse", "--short", args.before).strip(),
               "after": _git("rev-parse", "--short", "HEAD").strip(), "programs": args.programs, "batch": args.batch,
               "rounds": []}
    for _ in range(args.rounds):
        results["rounds"].append({side: profile(grading, sources, specs, args.batch) for side, grading in sides.items()})
    results["uptime_end"] = _uptime()
    keys = [(kind, key) for kind in ("per_batch", "cpu_ms", "wall_ms") for key in results["rounds"][0]["after"][kind]]
    print(f"{'':72s} {'before':>9s} {'after':>9s}   (medians over {args.rounds} rounds of {args.programs} programs)")
    labels = {f"{a}->{b}": what for a, b, what in PHASES}
    results["summary"] = {}
    for kind, key in keys:
        values = {side: statistics.median(r[side][kind].get(key, float("nan")) for r in results["rounds"]) for side in sides}
        results["summary"][f"{kind}: {key}"] = values
        print(f"{kind + ': ' + labels.get(key, key):72.72s} {values['before']:9.3f} {values['after']:9.3f}")
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
