"""Combined fidelity/diversity plot of one or more `diffuse image cfg-sweep` tables.

`diffuse image cfg-sweep` draws its own cfg-sweep.png; this script overlays several runs of
it on the same checkpoint (e.g. a separate `--guidance auto` run) for BENCHMARKS.md:

    python bench/plot_cfg_sweep.py OUT.png SWEEP1/cfg-sweep.csv SWEEP2/cfg-sweep.csv \
        [--floor 14.21] [--title TEXT]

x: accuracy (%), y: Fréchet distance (log), one line per method through w = 0 … max, each
point labelled with its w.
"""
import argparse
import csv

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("csvs", nargs="+")
    ap.add_argument("--floor", type=float, default=None)
    ap.add_argument("--title", default="digits: guidance methods, accuracy vs Fréchet distance")
    a = ap.parse_args()
    series = {}
    for path in a.csvs:
        with open(path) as f:
            for row in csv.DictReader(f):
                series.setdefault(row["method"], []).append(
                    (float(row["w"]), 100 * float(row["accuracy"]), float(row["frechet"]))
                )
    fig, ax = plt.subplots(figsize=(8, 5.5))
    for name, pts in series.items():
        pts.sort()
        ax.plot([p[1] for p in pts], [p[2] for p in pts], marker="o", label=name)
        for w, x, y in pts:
            ax.annotate(f"{w:g}", (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
    if a.floor is not None:
        ax.axhline(a.floor, color="gray", linestyle="--", label="real-vs-real floor")
    ax.set_yscale("log")
    ax.set_xlabel("accuracy (%) — recognised as the requested digit")
    ax.set_ylabel("Fréchet distance (classifier features), log")
    ax.set_title(a.title, fontsize=10)
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(a.out, dpi=100)


if __name__ == "__main__":
    main()
