"""Writes the reliability table into doc/RELIABILITY.md, between its markers, from one run of
reliability/run: the rows the tests recorded (JSON lines, one per passed test), the fuzz
targets' results, and any test that failed. The text around the markers is kept."""

import argparse
import datetime
import json
import os
import platform
import re

BEGIN = "<!-- reliability:begin (written by reliability/run) -->"
END = "<!-- reliability:end -->"


def cell(s):
    return str(s).replace("|", "\\|").replace("\n", " ")


def main():
    ap = argparse.ArgumentParser()
    for a in ("mode", "command", "seconds", "rows", "tests", "fuzz", "doc"):
        ap.add_argument("--" + a, required=True)
    args = ap.parse_args()

    rows = [json.loads(l) for l in open(args.rows) if l.strip()]
    tests = open(args.tests, errors="replace").read()
    failed = sorted(set(re.findall(r"^test (\S+) \.\.\. FAILED", tests, re.M)))
    passed = len(re.findall(r"^test \S+ \.\.\. ok", tests, re.M))
    for m in re.finditer(
        r"^fuzz-result target=(\S+) runs=(\d+) seconds=([\d.]+) crashes=(\d+)",
        open(args.fuzz, errors="replace").read(),
        re.M,
    ):
        target, runs, secs, crashes = m.groups()
        rows.append(
            {
                "class": f"fuzzing: {target} decoder",
                "tried": f"cargo fuzz (libFuzzer), {float(secs):.0f} s, inputs up to 64 KiB, "
                "any single allocation over 256 MiB aborts, RSS limit 2 GiB",
                "times": int(runs),
                "outcome": "no panic, no oversized allocation, round trip stable"
                if crashes == "0"
                else f"**{crashes} crashes**",
            }
        )

    lines = [
        BEGIN,
        "",
        f"Mode **{args.mode}**, {datetime.date.today().isoformat()}, "
        f"{os.cpu_count()} cores, Linux {platform.release()}; "
        f"`{args.command}` took {int(args.seconds) // 60} min {int(args.seconds) % 60} s; "
        f"{passed} tests passed, {len(failed)} failed.",
        "",
        "| Class | What was tried | Times | Result |",
        "|---|---|---:|---|",
    ]
    for r in rows:
        lines.append(
            f"| {cell(r['class'])} | {cell(r['tried'])} | {r['times']:,} | {cell(r['outcome'])} |"
        )
    for t in failed:
        lines.append(f"| **FAILED** | `{t}` | | see the run's log |")
    lines += ["", END]
    block = "\n".join(lines)

    doc = open(args.doc).read() if os.path.exists(args.doc) else f"{BEGIN}\n{END}\n"
    if BEGIN in doc and END in doc:
        head, rest = doc.split(BEGIN, 1)
        tail = rest.split(END, 1)[1]
        doc = head + block + tail
    else:
        doc = doc.rstrip("\n") + "\n\n" + block + "\n"
    open(args.doc, "w").write(doc)
    print(f"wrote {len(rows)} rows to {args.doc}" + (f"; FAILED: {failed}" if failed else ""))


if __name__ == "__main__":
    main()
