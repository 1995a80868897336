"""The slowest tests of a pytest run, from its JUnit XML (`.ci/run` writes test-artifacts/junit.xml), as the Markdown
table docs/testing.md shows: each test's time is its set-up, call and tear-down together (pytest's junit default), so
a session fixture's start-up counts against the first test that asks for it.

    python scripts/slowest_tests.py test-artifacts/junit.xml [--top 20]
"""

from __future__ import annotations

import argparse
import xml.etree.ElementTree as ET
from pathlib import Path


def durations(junit: Path) -> list[tuple[float, str]]:
    """(seconds, file::test) for every test case in the report, slowest first."""
    cases = []
    for case in ET.parse(junit).iter("testcase"):
        module = case.get("classname", "").replace(".", "/")
        cases.append((float(case.get("time", 0.0)), f"{module}.py::{case.get('name')}"))
    return sorted(cases, reverse=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("junit", type=Path)
    parser.add_argument("--top", type=int, default=20)
    args = parser.parse_args()
    cases = durations(args.junit)
    total = sum(seconds for seconds, _ in cases)
    print(f"{len(cases)} tests, {total / 60:.1f} min in all (set-up, call and tear-down)\n")
    print("| # | test | s |\n|---|---|---|")
    for rank, (seconds, name) in enumerate(cases[: args.top], 1):
        print(f"| {rank} | `{name}` | {seconds:.0f} |")
    top = sum(seconds for seconds, _ in cases[: args.top])
    print(f"\nThe {args.top} slowest: {top / 60:.1f} min, {100 * top / total:.0f} % of the suite's test time.")


if __name__ == "__main__":
    main()
