"""docs/verification.md points every row at its tests: each `file::name` it names must be
a function (a pytest test, a cocotb testcase or a helper) defined in that file, so a
renamed or deleted test shows up here instead of leaving the plan pointing at nothing."""
import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PLAN = ROOT / "docs" / "verification.md"
#: `file::name`, or `file::prefix*` for a family of tests (the plan's placeholder `tb/NAME_tb.py`
#: has no lower-case name and does not match)
REF = re.compile(r"`((?:tests|tb|benchmarks)/[a-z0-9_/]+\.py)::([A-Za-z_][A-Za-z0-9_]*)(\*?)")


def _defined(path):
    tree = ast.parse(path.read_text(), filename=str(path))
    return {n.name for n in ast.walk(tree)
            if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))}


def test_every_test_the_plan_names_exists():
    refs = sorted(set(REF.findall(PLAN.read_text())))
    assert len(refs) > 100, f"only {len(refs)} references found: the pattern is stale"
    cache, missing = {}, []
    for rel, name, star in refs:
        path = ROOT / rel
        if not path.exists():
            missing.append(f"{rel} (no such file)")
            continue
        if rel not in cache:
            cache[rel] = _defined(path)
        found = (any(d.startswith(name) for d in cache[rel]) if star
                 else name in cache[rel])
        if not found:
            missing.append(f"{rel}::{name}{star}")
    assert not missing, "docs/verification.md names tests that do not exist: " + ", ".join(missing)


def test_no_row_is_left_missing_without_being_listed():
    """A row whose status is 'missing' must appear in 'What is missing' (the plan's rule)."""
    text = PLAN.read_text()
    head, _, tail = text.partition("## What is missing")
    assert tail, "the plan has no 'What is missing' section"
    rows = [line for line in head.splitlines()
            if line.startswith("|") and line.rstrip().endswith("| missing |")]
    for row in rows:
        cls = row.split("|")[1].strip()
        assert cls in tail, f"missing row {cls!r} is not listed under 'What is missing'"
