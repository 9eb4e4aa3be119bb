"""What ≥ 99 % accuracy costs in Fréchet distance on the digits, with the judge itself as oracle
(issue 23; BENCHMARKS.md "What 99 % costs").

  python3 bench/judge_oracle.py --w0 W0 --guided G --pool P [--diffuse target/release/diffuse]
      [--work DIR (default: a folder in the system temp dir)]

W0 and G are `image sample` folders of one digits run drawn with the same seed and labels (so
image i of both starts from the same noise), W0 at w = 0 and G guided; P is another w = 0 draw
of the same run. Two hand-made sample sets are judged beside W0 and G:

  oracle     W0's images, except those the judge does not recognise, which are replaced by
             the guided version of the same image (G's image i): guidance applied only where
             the evaluation classifier itself says it is needed, everything else untouched.
  rejection  W0's images, except those the judge does not recognise, which are replaced by
             images of P with the same label that it does recognise: the judge's own rejection
             sampling, i.e. W0's distribution conditioned on being recognised.

Neither can be built without the judge (it is the evaluation classifier), so neither is a
sampler; they bound what any guidance could do. Prints one line per set: accuracy and the
Fréchet distance to the real digits, and the distance relative to W0's.

Needs only Python's standard library and a built `diffuse` (its `image judge --per-image`).
"""
import argparse
import csv
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path


def judge(diffuse, folder, per_image=None):
    cmd = [diffuse, "image", "judge", str(folder)]
    if per_image:
        cmd += ["--per-image", str(per_image)]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{r.stderr}")
    out = r.stdout
    acc = float(re.search(r"accuracy: ([0-9.]+)%", out).group(1))
    fd = float(re.search(r"frechet: ([0-9.]+)", out).group(1))
    rows = list(csv.DictReader(open(per_image))) if per_image else None
    return acc, fd, rows


def hybrid(out, w0, labels_csv, pick):
    """A samples folder: W0's labels.csv, image i from pick(i, row) (a path)."""
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    shutil.copy(labels_csv, out / "labels.csv")
    for i, row in enumerate(w0):
        shutil.copy(pick(i, row), out / row["file"])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--w0", type=Path, required=True)
    ap.add_argument("--guided", type=Path, required=True)
    ap.add_argument("--pool", type=Path, required=True)
    ap.add_argument("--diffuse", default="target/release/diffuse")
    ap.add_argument("--work", type=Path, default=None)
    a = ap.parse_args()
    work = a.work or Path(tempfile.mkdtemp(prefix="judge-oracle-"))
    work.mkdir(parents=True, exist_ok=True)

    acc0, fd0, w0 = judge(a.diffuse, a.w0, work / "w0.csv")
    accg, fdg, g = judge(a.diffuse, a.guided, work / "guided.csv")
    _, _, pool = judge(a.diffuse, a.pool, work / "pool.csv")
    if [r["class"] for r in w0] != [r["class"] for r in g]:
        sys.exit(f"{a.w0} and {a.guided} do not request the same labels (same seed needed)")
    spare = {}
    for r in pool:
        if r["recognised"] == "1":
            spare.setdefault(r["class"], []).append(a.pool / r["file"])
    missed = [i for i, r in enumerate(w0) if r["recognised"] != "1"]

    hybrid(work / "oracle", w0, a.w0 / "labels.csv",
           lambda i, r: (a.guided / g[i]["file"]) if r["recognised"] != "1" else a.w0 / r["file"])

    def from_pool(i, r):
        if r["recognised"] == "1":
            return a.w0 / r["file"]
        if not spare.get(r["class"]):
            sys.exit(f"{a.pool} has too few recognised images of class {r['class']}")
        return spare[r["class"]].pop()

    hybrid(work / "rejection", w0, a.w0 / "labels.csv", from_pool)
    acco, fdo, _ = judge(a.diffuse, work / "oracle")
    accr, fdr, _ = judge(a.diffuse, work / "rejection")
    fixed = sum(g[i]["recognised"] == "1" for i in missed)
    print(f"w0 {acc0:.1f}% / {fd0:.3f}; not recognised {len(missed)}, of which guidance fixes {fixed}")
    for name, acc, fd in [("guided", accg, fdg), ("oracle", acco, fdo), ("rejection", accr, fdr)]:
        print(f"{name:9s} {acc:.1f}% / {fd:.3f}  ({100 * (fd / fd0 - 1):+.1f} % against w0)")


if __name__ == "__main__":
    main()
