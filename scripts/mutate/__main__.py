"""Run mutmut on each target in a scratch copy and report killed / survived per target.

Each target gets its own copy of the repository's ``server/``, ``tests/`` and ``pyproject.toml``
under ``.mutation/<target>/`` with a ``setup.cfg`` naming the files to mutate and the tests to
run, so targets never share mutmut's caches and the working tree is never touched (mutmut
writes its ``mutants/`` directory inside the copy). Fixtures run there as anywhere: the
embedded store and Redis are started once for the whole run (``shared_services``) and handed to
``tests/conftest.py`` through ``KONVO_TEST_MONGODB_URI`` / ``KONVO_TEST_REDIS_URL``: each mutant's
tests still get a database of their own, but no mutant pays for starting the services again.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from scripts.mutate.targets import EXTRA, TARGETS, Target, by_name
from server.config import Settings
from server.dev.embedded import free_port, start_services

ROOT = Path(__file__).resolve().parents[2]
WORK = ROOT / ".mutation"
COPIED = ("server", "tests", "pyproject.toml")
IGNORED = shutil.ignore_patterns("__pycache__", "*.pyc", "node_modules", ".hypothesis", "generated")
RESULT_LINE = re.compile(r"^\s+(\S+__mutmut_\d+): (.+)$")
AGAIN = ("survived", "no tests")  # what a first stage leaves for the second (a timeout is detected)


@dataclass
class Outcome:
    target: Target
    statuses: dict[str, str] = field(default_factory=dict)
    diffs: dict[str, str] = field(default_factory=dict)
    error: str | None = None
    seconds: float = 0.0
    stages: list[str] = field(default_factory=list)  # what each stage ran and how long it took
    workdir: Path | None = None

    @property
    def counts(self) -> Counter[str]:
        return Counter(self.statuses.values())

    @property
    def survivors(self) -> list[str]:
        return sorted(k for k, s in self.statuses.items() if s != "killed")


def _setup_cfg(target: Target, tests: tuple[str, ...]) -> str:
    def listed(values: tuple[str, ...]) -> str:
        return "".join(f"\n    {v}" for v in values)

    return (
        "[mutmut]\n"
        "source_paths = server\n"
        f"only_mutate ={listed(target.files)}\n"
        f"pytest_add_cli_args_test_selection ={listed(tests)}\n"
        # The default suite's selection: the ``full`` variants (the same tests on a Redis Cluster)
        # would start a cluster in every mutant's process and double a target's time.
        "pytest_add_cli_args =\n    -p\n    no:cacheprovider\n    -m\n    not full\n"
        "use_git_change_detection = false\n"
    )


def _prepare(target: Target, tests: tuple[str, ...], workdir: Path) -> Path:
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    for name in COPIED:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, workdir / name, ignore=IGNORED)
        else:
            shutil.copy2(source, workdir / name)
    (workdir / "setup.cfg").write_text(_setup_cfg(target, tests))
    return workdir


@contextmanager
def shared_services() -> Iterator[None]:
    """One embedded store and Redis for every mutant (unless the caller names external ones)."""
    if os.environ.get("KONVO_TEST_MONGODB_URI") and os.environ.get("KONVO_TEST_REDIS_URL"):
        yield
        return
    with tempfile.TemporaryDirectory(prefix="konvo-mutation-") as data_dir:
        boot = Settings(data_dir=Path(data_dir), store_port=free_port(), redis_port=free_port())
        running = start_services(boot, redis_persist=False)
        try:
            assert running.mongodb_uri is not None and running.redis_url is not None
            os.environ["KONVO_TEST_MONGODB_URI"] = running.mongodb_uri
            os.environ["KONVO_TEST_REDIS_URL"] = running.redis_url
            yield
        finally:
            running.stop()


def _mutmut(workdir: Path, *args: str, log: Path | None = None) -> subprocess.CompletedProcess[str]:
    command = [str(Path(sys.executable).with_name("mutmut")), *args]
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    if log is None:
        return subprocess.run(command, cwd=workdir, env=env, capture_output=True, text=True)
    with log.open("w") as out:
        return subprocess.run(command, cwd=workdir, env=env, stdout=out, stderr=subprocess.STDOUT, text=True)


def run_target(target: Target, jobs: int, work: Path = WORK) -> Outcome:
    """One stage, or two with ``first_tests``: the fast tests' survivors are run again with all."""
    if not target.first_tests:
        return _with_diffs(_run_stage(target, target.tests, target.mutants, jobs, work / target.name))
    first = _run_stage(target, target.first_tests, target.mutants, jobs, work / f"{target.name}.first")
    alive = tuple(sorted(name for name, status in first.statuses.items() if status in AGAIN))
    if first.error or not alive:
        return _with_diffs(first)
    second = _with_diffs(_run_stage(target, target.tests, alive, jobs, work / target.name))
    first.statuses = {name: s for name, s in first.statuses.items() if name not in second.statuses}
    first = _with_diffs(first)  # what the first stage left that the second did not rerun (timeouts)
    return Outcome(
        target,
        statuses={**first.statuses, **second.statuses},
        diffs={**first.diffs, **second.diffs},
        error=second.error,
        seconds=first.seconds + second.seconds,
        stages=[*first.stages, *second.stages],
    )


def _with_diffs(outcome: Outcome) -> Outcome:
    """The diff of every mutant not killed, from the scratch copy that tested it."""
    if outcome.workdir is not None:
        for name in outcome.survivors:
            outcome.diffs[name] = _mutmut(outcome.workdir, "show", name).stdout
    return outcome


def _run_stage(
    target: Target, tests: tuple[str, ...], mutants: tuple[str, ...], jobs: int, workdir: Path
) -> Outcome:
    outcome = Outcome(target)
    _prepare(target, tests, workdir)
    log = workdir / "mutmut.log"
    began = time.monotonic()
    run = _mutmut(workdir, "run", "--max-children", str(jobs), *mutants, log=log)
    outcome.seconds = time.monotonic() - began
    if run.returncode != 0:
        tail = log.read_text(errors="replace").splitlines()[-15:]
        outcome.error = f"mutmut run exited {run.returncode} (log: {log}):\n" + "\n".join(tail)
        return outcome
    listing = _mutmut(workdir, "results", "--all", "true")
    selected = [re.compile(_glob_to_regex(g)) for g in mutants]
    for line in listing.stdout.splitlines():
        found = RESULT_LINE.match(line)
        if found is None:
            continue
        name, status = found.group(1), found.group(2).strip()
        if selected and not any(p.fullmatch(name) for p in selected):
            continue  # a function of the file that this target does not cover
        outcome.statuses[name] = status
    outcome.workdir = workdir
    outcome.stages = [f"{len(outcome.statuses)} mutants on {', '.join(tests)}: {outcome.seconds:.0f} s"]
    return outcome


def _glob_to_regex(glob: str) -> str:
    return ".*".join(re.escape(part) for part in glob.split("*"))


def _report(outcomes: list[Outcome], command: str) -> str:
    lines = [
        "# Surviving mutants",
        "",
        f"`{command}` on {datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        "",
        "| target | mutants | killed | survived | other |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for o in outcomes:
        c = o.counts
        other = sum(v for k, v in c.items() if k not in ("killed", "survived"))
        lines.append(f"| {o.target.name} | {sum(c.values())} | {c['killed']} | {c['survived']} | {other} |")
    for o in outcomes:
        lines += ["", f"## {o.target.name}: {o.target.why}", ""]
        lines.append("Files: " + ", ".join(o.target.files) + "; tests: " + ", ".join(o.target.tests))
        lines += ["", *(f"- {stage}" for stage in o.stages)]
        if o.error:
            lines += ["", "```", o.error, "```"]
        for name in o.survivors:
            diff = o.diffs.get(name, "").strip()
            lines += ["", f"### {name} ({o.statuses[name]})", "", "```diff", diff, "```"]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(prog="./scripts/mutation", description=__doc__)
    parser.add_argument("targets", nargs="*", help="target names (default: all)")
    parser.add_argument("--jobs", type=int, default=1, help="mutants tested in parallel")
    parser.add_argument("--list", action="store_true", help="list the targets and their tests")
    parser.add_argument("--report", type=Path, default=WORK / "survivors.md", help="where survivors go")
    parser.add_argument("--work", type=Path, default=WORK, help="scratch copies (two runs need two)")
    parser.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="GLOB",
        help="test only these mutants of the targets (mutmut names, globbed; repeatable), "
        "e.g. '*ǁtick__mutmut_*': a documented subset when a whole target takes too long",
    )
    args = parser.parse_args()
    if args.list:
        for t in TARGETS + EXTRA:
            print(f"{t.name:12} {', '.join(t.files)} <- {', '.join(t.tests)}")
        return 0
    outcomes: list[Outcome] = []
    print(f"{'target':12} {'mutants':>7} {'killed':>7} {'survived':>8} {'other':>6}", flush=True)
    with shared_services():
        for target in by_name(args.targets):
            if args.only:
                target = dataclasses.replace(target, mutants=tuple(args.only))
            outcome = run_target(target, args.jobs, args.work.resolve())
            outcomes.append(outcome)
            c = outcome.counts
            other = sum(v for k, v in c.items() if k not in ("killed", "survived"))
            tested = sum(c.values())
            line = f"{target.name:12} {tested:7} {c['killed']:7} {c['survived']:8} {other:6}"
            line += f"  {outcome.seconds / 60:.1f} min, {outcome.seconds / max(tested, 1):.1f} s/mutant"
            print(line + (f"  ERROR: {outcome.error.splitlines()[0]}" if outcome.error else ""), flush=True)
    report: Path = args.report
    report.parent.mkdir(parents=True, exist_ok=True)
    command = " ".join(["./scripts/mutation", *sys.argv[1:]])
    report.write_text(_report(outcomes, command))
    print(f"surviving mutants: {report}")
    return 1 if any(o.error for o in outcomes) else 0


if __name__ == "__main__":
    sys.exit(main())
