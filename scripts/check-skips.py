#!/usr/bin/env python3
"""Fails when an integration test skips on its own.

A test may only skip through cairn_harness.skip_for_machine (for something the
machine lacks, listed in MACHINE_SKIPS and enforced in CI); a missing Cairn
program or endpoint must fail (cairn_harness.require_programs). Any other
unittest skip in test/integration is reported here.

Usage: check-skips.py [SOURCE_DIR]
"""
import glob
import os
import re
import sys

SKIP = re.compile(r"\bSkipTest\b|\bskipTest\s*\(|@unittest\.skip|\bskipIf\b|\bskipUnless\b")


def main():
    root = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else
                           os.path.join(os.path.dirname(__file__), ".."))
    hits = []
    files = sorted(glob.glob(os.path.join(root, "test", "integration", "*.py")))
    for path in files:
        if os.path.basename(path) == "cairn_harness.py":
            continue  # where skip_for_machine lives
        with open(path, encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                if SKIP.search(line) and not line.lstrip().startswith("#"):
                    hits.append("%s:%d: %s" % (os.path.relpath(path, root), n, line.strip()))
    for h in hits:
        print(h)
    print("test skips outside cairn_harness.skip_for_machine: %d in %d files"
          % (len(hits), len(files)))
    return 1 if hits else 0


if __name__ == "__main__":
    sys.exit(main())
