"""Plots datastore's ratios from bench/results.json: how many times the raw object-store
rate, local disk, Mountpoint-S3, s3fs and rclone mount it reaches on each workload (1.0 = the same)."""
import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

src, dst = sys.argv[1], sys.argv[2]
rows = [r for r in json.load(open(src))["rows"] if r["higher_is_better"] and r["datastore"]]
against = [("limit", "raw GET/PUT (the limit)"), ("local", "local disk"), ("mountpoint-s3", "Mountpoint-S3"), ("s3fs", "s3fs"), ("rclone", "rclone mount")]
fig, ax = plt.subplots(figsize=(11, 0.55 * len(rows) + 1.5))
height = 0.8 / len(against)
for i, (key, label) in enumerate(against):
    ys, xs = [], []
    for j, r in enumerate(rows):
        if r.get(key):
            ys.append(j + i * height)
            xs.append(r["datastore"] / r[key])
    bars = ax.barh(ys, xs, height=height, label=label)
    ax.bar_label(bars, fmt="%.2g", fontsize=7, padding=2)
ax.set_yticks([j + 0.4 - height / 2 for j in range(len(rows))])
ax.set_yticklabels([f'{r["workload"]} ({r["unit"]})' for r in rows], fontsize=8)
ax.invert_yaxis()
ax.set_xscale("log")
ax.axvline(1.0, color="black", linewidth=0.8)
ax.set_xlabel("datastore ÷ other (log scale; right of 1 = datastore faster)")
ax.set_title("datastore relative to the limit, local disk, Mountpoint-S3, s3fs and rclone mount")
ax.legend(loc="lower right", fontsize=8)
fig.tight_layout()
fig.savefig(dst, dpi=110)
