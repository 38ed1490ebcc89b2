#!/usr/bin/env python3
"""Fails when C code in the tree calls a banned function.

Each of these has a bounded or reentrant replacement that the code base uses
instead; the reason is printed with every hit. Comments and string literals are
ignored; a name is a hit only where it is called (followed by "(").

Usage: check-banned.py [SOURCE_DIR]
"""
import os
import re
import sys

BANNED = {
    "strcpy": "unbounded copy: use snprintf or memcpy with a checked length",
    "strcat": "unbounded append: use snprintf at the end of the string",
    "strncpy": "may leave the result unterminated: use snprintf",
    "strncat": "easy to get the bound wrong: use snprintf",
    "sprintf": "unbounded: use snprintf",
    "vsprintf": "unbounded: use vsnprintf",
    "gets": "unbounded read: use fgets",
    "strtok": "keeps hidden state, not thread-safe: use strtok_r or explicit parsing",
    "atoi": "no error detection: use strtol and check the end pointer",
    "atol": "no error detection: use strtol and check the end pointer",
    "atoll": "no error detection: use strtoll and check the end pointer",
    "tmpnam": "racy temporary names: use mkstemp",
    "tempnam": "racy temporary names: use mkstemp",
    "mktemp": "racy temporary names: use mkstemp",
    "asctime": "static buffer, not thread-safe: use strftime",
    "ctime": "static buffer, not thread-safe: use strftime",
    "localtime": "static result, not thread-safe: use localtime_r",
    "gmtime": "static result, not thread-safe: use gmtime_r",
    "readdir_r": "deprecated: use readdir on a stream owned by one thread",
    "alloca": "unbounded stack use: use a fixed buffer or the heap",
}

FOLDERS = ("core", "format", "http", "s3", "store", "gc", "sync", "client", "cmd", "access",
           "fuzz", "bench", "test")
CALL = re.compile(r"(?<![\w.>])(" + "|".join(sorted(BANNED, key=len, reverse=True)) + r")\s*\(")
# Comments, then string and character literals (with escapes).
STRIP = re.compile(r"/\*.*?\*/|//[^\n]*|\"(?:\\.|[^\"\\\n])*\"|'(?:\\.|[^'\\\n])*'", re.S)


def blank(match):
    # Keep the line structure so that line numbers stay right.
    return re.sub(r"[^\n]", " ", match.group(0))


def check(path):
    with open(path, encoding="utf-8", errors="replace") as f:
        text = STRIP.sub(blank, f.read())
    hits = []
    for n, line in enumerate(text.split("\n"), 1):
        for m in CALL.finditer(line):
            hits.append("%s:%d: %s(): %s" % (path, n, m.group(1), BANNED[m.group(1)]))
    return hits


def main():
    root = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else
                           os.path.join(os.path.dirname(__file__), ".."))
    hits, files = [], 0
    for folder in FOLDERS:
        for dirpath, dirnames, filenames in os.walk(os.path.join(root, folder)):
            dirnames[:] = [d for d in dirnames if not d.startswith((".", "build"))]
            for name in sorted(filenames):
                if name.endswith((".c", ".h")):
                    files += 1
                    hits += check(os.path.join(dirpath, name))
    for h in hits:
        print(os.path.relpath(h, root))
    print("banned functions: %d call(s) in %d files" % (len(hits), files))
    return 1 if hits else 0


if __name__ == "__main__":
    sys.exit(main())
