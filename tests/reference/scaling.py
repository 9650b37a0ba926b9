#!/usr/bin/env python3
"""The scaling table: the crate's workloads (`cargo run --release --example
workloads`) and the reference's (`anchor_sizes.py`) at several image sizes,
the two run one after the other at each size, so that both see the same
machine. Writes the raw lines to a results file and prints a markdown table.

    python3 tests/reference/scaling.py [--sizes 112 224 448 896] [--repeat R]
        [--once NAME@S ...] [--skip NAME@S ...] [--results FILE] [NAME ...]
    python3 tests/reference/scaling.py --table FILE   # the table of a results file

Run from anywhere; it runs cargo at the repository root. The reference runs
under `env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE` with the Python of the
virtual environment in $REFERENCE_VENV (`$REFERENCE_VENV/bin/python`; without
it, `python3`), which needs saliency==0.2.1, scipy and scikit-image.

Per workload and size the table gives the crate's own cost (total minus its
model calls replayed alone), the reference's own cost, the ratio of the
totals (reference / crate) and the growth exponent of the crate's own cost
per pixel from the previous size, log(own_S / own_prev) / log((S / prev)^2);
the 896 row's is the exponent from 448 to 896.

The reference copies the image for every occlusion window, so its full-image
`occlusion` and `occlusion_own` take minutes at 448 and hours at 896: by
default they are skipped at 896 (`not run` in the table; `--skip none` runs everything). The crate's
takes minutes at 896 with its model replay; `--once NAME@S` runs a case with
--repeat 1 on both sides.
"""
import argparse
import math
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
DEFAULT_SKIP = ["occlusion@896", "occlusion_own@896"]


def parse_cases(items):
    """NAME@S strings as a set of (name, size)."""
    cases = set()
    for item in items:
        name, _, size = item.partition("@")
        if not size.isdigit():
            sys.exit(f"expected NAME@SIZE, got {item!r}")
        cases.add((name, int(size)))
    return cases


def run(side, size, command, results):
    """Runs one timing script, copying its lines `NAME<TAB>total<TAB>model`
    to the results file as `side<TAB>size<TAB>line` as they come."""
    print(f"{side} {size}: {' '.join(command)}", file=sys.stderr, flush=True)
    with subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, text=True) as proc:
        for line in proc.stdout:
            line = line.rstrip("\n")
            print(f"  {line}", file=sys.stderr, flush=True)
            results.write(f"{side}\t{size}\t{line}\n")
            results.flush()
    if proc.returncode != 0:
        sys.exit(f"{side} at size {size} failed (exit status {proc.returncode})")


def read_results(path):
    """{(side, name, size): (total, model)}, the workloads' first-seen order
    and the reference cases the run skipped (from the header line)."""
    times, order, skipped = {}, [], set()
    with open(path) as f:
        for line in f:
            if line.startswith("#"):
                _, found, rest = line.partition("; skipped ")
                if found:
                    skipped |= parse_cases(c for c in rest.split(";")[0].split() if c != "none")
                continue
            fields = line.rstrip("\n").split("\t")
            if len(fields) != 5:
                continue  # e.g. "NAME<TAB>not built yet"
            side, size, name, total, model = fields
            times[(side, name, int(size))] = (float(total), float(model))
            if name not in order:
                order.append(name)
    return times, order, skipped


def table(times, order, sizes, skipped):
    """The markdown table of the results."""
    def own(side, name, size):
        t = times.get((side, name, size))
        return None if t is None else t[0] - t[1]

    def seconds(v):
        return "-" if v is None else f"{v:.4g}"

    lines = [
        "| workload | size | crate own (s) | reference own (s) | ratio of totals | crate own growth exponent |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for name in order:
        prev = None
        for size in sizes:
            crate = times.get(("crate", name, size))
            reference = times.get(("reference", name, size))
            if crate is None and reference is None and (name, size) not in skipped:
                continue
            c_own = own("crate", name, size)
            if reference is not None:
                r_own = seconds(reference[0] - reference[1])
            else:
                r_own = "not run" if (name, size) in skipped else "-"
            ratio = f"{reference[0] / crate[0]:.3g}x" if crate and reference and crate[0] > 0 else "-"
            growth = "-"
            if prev is not None and c_own is not None:
                p_size, p_own = prev
                if c_own > 0 and p_own > 0:
                    growth = f"{math.log(c_own / p_own) / math.log((size / p_size) ** 2):.2f}"
            lines.append(f"| {name} | {size} | {seconds(c_own)} | {r_own} | {ratio} | {growth} |")
            prev = (size, c_own) if c_own is not None else None
    return "\n".join(lines)


def groups(names, size, skipped, once, repeat):
    """The (repeat, workloads) runs at one size: the cases not skipped, those
    of --once with --repeat 1."""
    normal = [n for n in names if (n, size) not in skipped and (n, size) not in once]
    single = [n for n in names if (n, size) in once and (n, size) not in skipped]
    return [(r, g) for r, g in ((repeat, normal), (1, single)) if g]


def all_workloads():
    """Every workload the crate's example knows, in its order."""
    out = subprocess.run(["cargo", "run", "--release", "--example", "workloads", "--", "--list"],
                         cwd=ROOT, capture_output=True, text=True)
    names = out.stdout.split()
    if out.returncode != 0 or not names:
        sys.exit(f"could not list the workloads:\n{out.stderr}")
    return names


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[112, 224, 448, 896])
    ap.add_argument("--repeat", type=int, default=3, help="runs per workload, median taken (default 3)")
    ap.add_argument("--once", action="append", default=[], metavar="NAME@S",
                    help="run this case with --repeat 1 (both sides)")
    ap.add_argument("--skip", action="append", default=None, metavar="NAME@S",
                    help=f"do not run this reference case (default {' '.join(DEFAULT_SKIP)}; 'none' skips nothing)")
    ap.add_argument("--results", help="raw results file (default target/scaling-<UTC time>.tsv)")
    ap.add_argument("--table", metavar="FILE", help="print the table of an existing results file and exit")
    ap.add_argument("names", nargs="*", help="workloads (default: all of both scripts)")
    args = ap.parse_args()
    if args.repeat < 1:
        ap.error("--repeat must be at least 1")
    skip_items = DEFAULT_SKIP if args.skip is None else [s for s in args.skip if s != "none"]
    skipped, once = parse_cases(skip_items), parse_cases(args.once)

    if args.table:
        times, order, skipped_then = read_results(args.table)
        sizes = sorted({size for (_, _, size) in times})
        print(table(times, order, sizes, skipped_then | (skipped if args.skip else set())))
        return

    python = os.path.join(os.environ["REFERENCE_VENV"], "bin", "python") if os.environ.get("REFERENCE_VENV") else "python3"
    path = args.results or os.path.join(ROOT, "target", time.strftime("scaling-%Y%m%dT%H%M%SZ.tsv", time.gmtime()))
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    names = args.names or all_workloads()
    reference = ["env", "-u", "OPENBLAS_CORETYPE", "-u", "OPENBLAS_L2_SIZE", python,
                 os.path.join(HERE, "anchor_sizes.py")]
    with open(path, "w") as results:
        results.write(f"# {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}; --repeat {args.repeat}; "
                      f"reference python {python}; skipped {' '.join(skip_items) or 'none'}; "
                      f"once {' '.join(args.once) or 'none'}\n")
        for size in args.sizes:
            crate = ["cargo", "run", "--release", "--example", "workloads", "--", "--size", str(size)]
            for repeat, group in groups(names, size, set(), once, args.repeat):
                run("crate", size, [*crate, "--repeat", str(repeat), *group], results)
            for repeat, group in groups(names, size, skipped, once, args.repeat):
                run("reference", size, [*reference, "--size", str(size), "--repeat", str(repeat), *group], results)
            for n in names:
                if (n, size) in skipped:
                    print(f"  reference {n} at {size}: not run", file=sys.stderr)
    print(f"raw results: {path}", file=sys.stderr)
    times, order, _ = read_results(path)
    print(table(times, order, args.sizes, skipped))


if __name__ == "__main__":
    main()
