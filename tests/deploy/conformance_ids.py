#!/usr/bin/env python3
"""conformance_ids.py SRCDIR [BUILDDIR] [-v] - docs/conformance.md is where requirement
IDs (A1 .. K2) are defined. Fails (exit 1, one line per problem) when
  1. an ID cited in the tree has no row or section heading in docs/conformance.md;
     cited means: a test name (test_E5_..., error_E4_..., cmocka b5_...) or an ID in a
     comment of the C, Python, shell and meson files, or in the text of the docs;
  2. a test named in a Tests column of the matrix does not exist: a meson test of
     BUILDDIR (meson-info/intro-tests.json), a cmocka case of the unit executable
     named before it ("`translate`: `test_A1_...`"), or a libFuzzer target (fuzz_*);
  3. a file points outside the repository (the development machine's checklist,
     notes or design files), which a clone of the project does not have.
-v also prints every citation found, for reviewing the patterns.
"""
import io
import json
import os
import re
import sys
import tokenize

MATRIX = os.path.join("docs", "conformance.md")
SKIP_DIRS = {".git", "__pycache__", "corpus", "demo", "subprojects"}
C_EXT = {".c", ".h"}
HASH_EXT = {".sh", ".build", ".txt", ".conf", ".service", ".yaml", ".yml", ".supp"}
HASH_NAMES = {"Containerfile", "Dockerfile", "meson_options.txt", "run"}
MAN_EXT = {".5", ".8"}

# A numbered ID in free text: not part of a longer word, hex or a quoted blob.
NUM_ID = re.compile(r"(?<![\w'])([A-L][1-9][0-9]?)(?![\w'])")
HEX2 = re.compile(r"^[0-9A-Fa-f]{2}$")
# IDs in test names: test_E5_..., error_E4_... (config error rows), b5_... (cmocka).
TEST_ID = re.compile(r"\b(?:test|error)_([A-Z][0-9]*)_")
ROW_ID = re.compile(r"\b(?:ROW|ERR_TEST)\(\s*([A-Z][0-9]*)_")
CMOCKA_LOWER_ID = re.compile(r"\bcmocka_unit_test\w*\(\s*([a-z][0-9]+)_")
# References to files a clone does not have (split so this file does not match itself).
FORBIDDEN = [
    re.compile(r"\b" + "SP" + r"EC\b"),
    re.compile("SP" + r"EC\.md"),
    re.compile(r"\b" + "NO" + r"TES\b"),
    re.compile(r"\.\./" + "shared"),
    re.compile("shared" + r"/(design|seeds|NOTES|hooks)"),
    re.compile(r"\bdesign/(cbrski|rfc8295)\.md"),
]


def is_build_dir(path):
    return os.path.isdir(os.path.join(path, "meson-private")) or \
        os.path.isdir(os.path.join(path, "meson-info"))


def tree_files(src):
    for root, dirs, files in os.walk(src):
        # build*/ at the top is ignored by git (.gitignore): build trees, and the
        # cross-build sysroots of tools/cross-build.sh (build-sysroot/)
        dirs[:] = sorted(d for d in dirs if d not in SKIP_DIRS and
                         not (root == src and d.startswith("build")) and
                         not is_build_dir(os.path.join(root, d)))
        for f in sorted(files):
            yield os.path.join(root, f)


def read_text(path):
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except (UnicodeDecodeError, OSError):
        return None


# ---- comment extraction ----------------------------------------------------

def c_comments(text):
    """The comments of C source, string and character literals skipped."""
    out, i, n = [], 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("/*", i):
            j = text.find("*/", i + 2)
            j = n if j < 0 else j
            out.append(text[i + 2:j])
            i = j + 2
        elif text.startswith("//", i):
            j = text.find("\n", i)
            j = n if j < 0 else j
            out.append(text[i + 2:j])
            i = j
        elif c in "\"'":
            i += 1
            while i < n and text[i] != c and text[i] != "\n":
                i += 2 if text[i] == "\\" else 1
            i += 1
        else:
            i += 1
    return out


def py_comments(text):
    """Comments and docstrings of Python source."""
    out, prev = [], tokenize.NEWLINE
    try:
        for tok in tokenize.generate_tokens(io.StringIO(text).readline):
            if tok.type == tokenize.COMMENT:
                out.append(tok.string[1:])
            elif tok.type == tokenize.STRING and prev in (
                    tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT, tokenize.NL):
                out.append(tok.string)
            if tok.type not in (tokenize.COMMENT, tokenize.NL):
                prev = tok.type
    except (tokenize.TokenError, SyntaxError):
        pass
    return out


def hash_comments(text):
    """'#' comments of shell, meson and config files."""
    out = []
    for line in text.splitlines():
        m = re.search(r"(?:^|\s)#(.*)$", line)
        if m and not line.startswith("#!"):
            out.append(m.group(1))
    return out


def md_text(text):
    """Markdown prose: fenced blocks and inline code spans removed."""
    text = re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)
    return [re.sub(r"`[^`\n]*`", "", text)]


def kind_of(path, text):
    base = os.path.basename(path)
    ext = os.path.splitext(base)[1]
    first = text.split("\n", 1)[0]
    if ext in C_EXT:
        return c_comments
    if ext == ".py" or (first.startswith("#!") and "python" in first):
        return py_comments
    if ext == ".md":
        return md_text
    if ext in MAN_EXT:
        return lambda t: [t]
    if ext in HASH_EXT or base in HASH_NAMES or first.startswith("#!"):
        return hash_comments
    return None


def hexdump_neighbour(s, start, end):
    """True when the match sits in a run of hex byte pairs ("A3 57 30 55")."""
    before = s[:start].rsplit(None, 1)
    after = s[end:].split(None, 1)
    return (start > 0 and s[start - 1] == " " and before and HEX2.match(before[-1])) or \
        (end < len(s) and s[end] == " " and after and HEX2.match(after[0]))


def cited_ids(path, text, rel):
    """(id, how) pairs cited by one file."""
    found = []
    if rel.startswith("tests" + os.sep):
        for rx in (TEST_ID, ROW_ID):
            found += [(m.group(1), "test name") for m in rx.finditer(text)]
        found += [(m.group(1).upper(), "test name") for m in CMOCKA_LOWER_ID.finditer(text)]
    extract = kind_of(path, text)
    for chunk in extract(text) if extract else []:
        for m in NUM_ID.finditer(chunk):
            if not hexdump_neighbour(chunk, m.start(1), m.end(1)):
                found.append((m.group(1), "comment/text"))
    return found


# ---- the matrix --------------------------------------------------------------

def parse_matrix(text):
    """Defined IDs, and (ID, Tests cell) of every requirement row."""
    ids, rows, in_req_table = set(), [], False
    for line in text.splitlines():
        h = re.match(r"^##\s+([A-L])\.\s", line)
        if h:
            ids.add(h.group(1))
        if not line.startswith("|"):
            in_req_table = False
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if cells[0] == "ID":
            in_req_table = cells[-1] == "Tests"
            continue
        if in_req_table and re.match(r"^[A-L][0-9]*$", cells[0]):
            ids.add(cells[0])
            rows.append((cells[0], cells[-1]))
    return ids, rows


def unit_cases(src):
    """{unit executable: set of cmocka case names} from tests/unit."""
    udir = os.path.join(src, "tests", "unit")
    mb = read_text(os.path.join(udir, "meson.build")) or ""
    exes = {}
    for name, cfile in re.findall(r"'(\w+)':\s*\[?\s*files\('(test_\w+\.c)'\)", mb):
        text = read_text(os.path.join(udir, cfile)) or ""
        cases = set(re.findall(r"\bcmocka_unit_test\w*\(\s*(\w+)", text))
        cases |= {"error_" + x for x in re.findall(r"\bERR_TEST\((\w+)\)", text)}
        exes[name] = cases
    return exes


def meson_tests(build):
    with open(os.path.join(build, "meson-info", "intro-tests.json")) as f:
        return {t["name"] for t in json.load(f)}


def fuzz_targets(src):
    fdir = os.path.join(src, "tests", "fuzz")
    return {f[:-2] for f in os.listdir(fdir) if re.match(r"fuzz_\w+\.c$", f)}


def check_tests_cell(rid, cell, known, exes):
    problems = []
    for group in cell.split(";"):
        group = group.strip()
        m = re.match(r"^`(\w+)`:\s*(.*)$", group)
        if m and m.group(1) in exes:
            for name in re.findall(r"`([^`]+)`", m.group(2)):
                if name not in exes[m.group(1)]:
                    problems.append(f"{MATRIX}: {rid}: no case {name} in unit test {m.group(1)}")
            continue
        for name in re.findall(r"`([^`]+)`", group):
            if name not in known:
                problems.append(f"{MATRIX}: {rid}: no test named {name}")
    return problems


def main(argv):
    verbose = "-v" in argv
    args = [a for a in argv[1:] if a != "-v"]
    if not args:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    src = os.path.abspath(args[0])
    build = args[1] if len(args) > 1 else next(
        (os.path.join(src, d) for d in ("build-asan", "build") if
         os.path.isdir(os.path.join(src, d, "meson-info"))), None)
    if not build:
        print("conformance_ids: no build directory (meson-info) given or found", file=sys.stderr)
        return 2
    matrix = read_text(os.path.join(src, MATRIX))
    if matrix is None:
        print(f"conformance_ids: {MATRIX} missing", file=sys.stderr)
        return 1
    defined, rows = parse_matrix(matrix)
    problems, cited, files_citing = [], {}, 0
    me = os.path.abspath(__file__)
    for path in tree_files(src):
        text = read_text(path)
        if text is None or os.path.abspath(path) == me:
            continue
        rel = os.path.relpath(path, src)
        for rx in FORBIDDEN:
            for m in rx.finditer(text):
                line = text.count("\n", 0, m.start()) + 1
                problems.append(f"{rel}:{line}: points outside the repository: {m.group(0)!r}")
        ids = cited_ids(path, text, rel)
        files_citing += bool(ids)
        for rid, how in ids:
            cited.setdefault(rid, set()).add(rel)
            if verbose:
                print(f"{rel}: {rid} ({how})")
    for rid in sorted(cited):
        if rid not in defined:
            where = ", ".join(sorted(cited[rid])[:5])
            problems.append(f"{rid}: cited ({where}) but not defined in {MATRIX}")
    known = meson_tests(build) | fuzz_targets(src)
    exes = unit_cases(src)
    named = 0
    for rid, cell in rows:
        named += len(re.findall(r"`([^`]+)`", cell))
        problems += check_tests_cell(rid, cell, known, exes)
    for p in problems:
        print(p)
    print(f"conformance_ids: {len(defined)} IDs defined, {len(cited)} cited in "
          f"{files_citing} files, {named} test names checked, {len(problems)} problems")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
