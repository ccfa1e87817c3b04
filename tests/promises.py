# SPDX-License-Identifier: Apache-2.0
"""tests/PROMISES.md against the tree: every test a row names exists, every
M<n> is a line of tests/mutants.txt naming one of the row's tests, every
line of tests/mutants.txt is claimed by a row, and a row without a mutant
says why. TAP on stdout."""
import os
import re
import sys

TESTS = os.path.dirname(os.path.abspath(__file__))


def mutants():
    """[(number, file, [test basenames])] in the order make mutants counts."""
    out = []
    with open(os.path.join(TESTS, "mutants.txt")) as f:
        for line in f:
            line = line.rstrip("\n")
            if not line or line.startswith("#"):
                continue
            parts = line.split(" | ")
            names = [os.path.basename(t) for t in parts[3].split()] if len(parts) > 3 else []
            out.append((len(out) + 1, parts[0], names))
    return out


def rows():
    """(line number, promise, [test refs], mutant cell) of every table row."""
    out = []
    with open(os.path.join(TESTS, "PROMISES.md")) as f:
        for n, line in enumerate(f, 1):
            if not line.startswith("| ") or line.startswith("| promise ") or line.startswith("|---"):
                continue
            cells = [c.strip() for c in line.strip().strip("|").split(" | ")]
            if len(cells) != 4:
                out.append((n, line.strip(), None, None))
                continue
            refs = re.findall(r"`([^`]+)`", cells[2])
            out.append((n, cells[0], refs, cells[3]))
    return out


def find_test(ref):
    """None when ref names a test that exists, else what is wrong."""
    script, _, fn = ref.partition("::")
    for sub in ("unit", "integration", "browser", "."):
        base = os.path.join(TESTS, sub, script)
        for path in (base + ".c", base):
            if os.path.isfile(path):
                if not fn:
                    return None
                with open(path) as f:
                    text = f.read()
                pat = {".c": rf"\bstatic void {re.escape(fn)}\(void\)",
                       ".py": rf"\bdef {re.escape(fn)}\("}.get(os.path.splitext(path)[1],
                                                            re.escape(fn))
                return None if re.search(pat, text) else f"{path} has no {fn}"
    return f"no test script {script}"


def broker_suites():
    """The scripts that run multinode.py's tests, each with its broker."""
    d = os.path.join(TESTS, "integration")
    out = set()
    for name in os.listdir(d):
        if name.startswith("test_") and name.endswith(".py"):
            with open(os.path.join(d, name)) as f:
                if re.search(r"^from multinode import .*\bregister\b", f.read(), re.M):
                    out.add(stem(name))
    return out


def stem(name):
    return os.path.splitext(name)[0]


def main():
    ms = mutants()
    table = rows()
    claimed = set()
    results = []
    for n, promise, refs, cell in table:
        what = f"PROMISES.md:{n}: {promise[:70]}"
        if refs is None:
            results.append((what, ["a row needs four cells"]))
            continue
        wrong = []
        if not refs:
            wrong.append("no test named")
        wrong += [e for e in (find_test(r) for r in refs) if e]
        files = {stem(r.partition("::")[0]) for r in refs}
        if "multinode" in files:
            files |= broker_suites()
        # "— why": no mutant, and the reason may mention others' M<n>.
        reason = cell.startswith("—")
        numbers = [] if reason else [int(m) for m in re.findall(r"\bM(\d+)\b", cell)]
        if reason and len(cell.strip("— ")) < 10:
            wrong.append("a row without a mutant must say why")
        elif not reason and not numbers:
            wrong.append(f"mutant cell {cell!r}: M<n>, or — and why not")
        for k in numbers:
            if not 1 <= k <= len(ms):
                wrong.append(f"M{k}: tests/mutants.txt has {len(ms)} lines")
                continue
            claimed.add(k)
            if not files & {stem(t) for t in ms[k - 1][2]}:
                wrong.append(f"M{k} ({ms[k - 1][1]}) runs {ms[k - 1][2]}, none of this row's tests")
        results.append((what, wrong))
    for k, file, names in ms:
        if k not in claimed:
            results.append((f"mutant M{k} ({file}, {' '.join(names)})",
                            ["no row of PROMISES.md claims it"]))
    failed = 0
    for i, (what, wrong) in enumerate(results, 1):
        if wrong:
            failed += 1
            print(f"not ok {i} - {what}")
            for w in wrong:
                print(f"#   {w}")
        else:
            print(f"ok {i} - {what}")
    print(f"1..{len(results)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
