#!/usr/bin/env python3
"""Folded stacks and a flame graph SVG from `perf script` output, with no dependency beyond Python 3.

Usage:
  perf script -i perf.data | bench/flamegraph.py --folded out.folded --svg out.svg --title "tandem, 50 connections"
  bench/flamegraph.py --top 25 < perf-script.txt      # the hottest leaf frames and inclusive frames, as text

Swift symbols are demangled with `swift demangle --simplified` when the toolchain is on PATH. Frames narrower
than --min-percent of all samples are left out of the SVG (they stay in the folded file), which keeps the SVG
small enough to commit.
"""

import argparse
import collections
import html
import re
import shutil
import subprocess
import sys
import zlib

HEADER = re.compile(r"^\S.*?\s+\d+(/\d+)?\s+(\[\d+\]\s+)?[\d.]+:")
FRAME = re.compile(r"^\s+[0-9a-f]+\s+(.+?)\s+\((.*)\)\s*$")


def read_stacks(lines):
    """Yields one stack per sample, root first, as a list of frame names."""
    frames = []
    in_sample = False
    for line in lines:
        line = line.rstrip("\n")
        if not line.strip():
            if in_sample and frames:
                yield list(reversed(frames))
            frames, in_sample = [], False
            continue
        if not in_sample and HEADER.match(line):
            in_sample = True
            continue
        match = FRAME.match(line)
        if in_sample and match:
            symbol, dso = match.group(1), match.group(2)
            symbol = re.sub(r"\+0x[0-9a-f]+$", "", symbol)
            if symbol == "[unknown]":
                symbol = "[" + dso.rsplit("/", 1)[-1] + "]"
            elif dso == "[kernel.kallsyms]":
                symbol += "_[k]"
            frames.append(symbol)
    if in_sample and frames:
        yield list(reversed(frames))


def demangler(symbols):
    """Maps each mangled Swift symbol to its simplified demangled form (identity without the toolchain)."""
    mangled = sorted({s for s in symbols if s.startswith(("$s", "_$s"))})
    table = {s: s for s in symbols}
    tool = shutil.which("swift")
    if not mangled or tool is None:
        return table
    result = subprocess.run(
        [tool, "demangle", "--simplified"], input="\n".join(mangled), capture_output=True, text=True, check=False
    )
    output = result.stdout.splitlines()
    if result.returncode == 0 and len(output) == len(mangled):
        for name, readable in zip(mangled, output):
            table[name] = readable.replace(";", ",")
    return table


def fold(stacks):
    counts = collections.Counter()
    for stack in stacks:
        counts[tuple(stack)] += 1
    names = demangler({frame for stack in counts for frame in stack})
    folded = collections.Counter()
    for stack, count in counts.items():
        folded[";".join(names[f] for f in stack)] += count
    return folded


def color(name):
    """Warm colours for user code, blue for the kernel, green for Swift runtime and libc, stable per name."""
    h = zlib.crc32(name.encode()) & 0xFFFF
    if name.startswith("[k]") or name.endswith("_[k]") or name in ("entry_SYSCALL_64_after_hwframe",):
        return "rgb(%d,%d,230)" % (80 + h % 60, 140 + h % 60)
    if name.startswith(("swift_", "malloc", "free", "_int_", "__memmove", "__memcpy", "cfree")):
        return "rgb(%d,200,%d)" % (80 + h % 80, 80 + h % 60)
    return "rgb(230,%d,%d)" % (90 + h % 120, 40 + h % 50)


def build_tree(folded):
    root = {"name": "all", "value": 0, "children": {}}
    for stack, count in folded.items():
        node = root
        node["value"] += count
        for frame in stack.split(";"):
            node = node["children"].setdefault(frame, {"name": frame, "value": 0, "children": {}})
            node["value"] += count
    return root


def svg(folded, title, min_percent, width=1200, row=16):
    root = build_tree(folded)
    total = root["value"] or 1
    min_samples = total * min_percent / 100.0
    rects = []
    depth_max = 0

    def place(node, x, depth):
        nonlocal depth_max
        depth_max = max(depth_max, depth)
        rects.append((node, x, depth))
        child_x = x
        for child in sorted(node["children"].values(), key=lambda c: c["name"]):
            if child["value"] >= min_samples:
                place(child, child_x, depth + 1)
            child_x += child["value"]

    place(root, 0, 0)
    height = (depth_max + 1) * row + 40
    scale = (width - 20) / total
    out = [
        '<?xml version="1.0" standalone="no"?>',
        f'<svg version="1.1" width="{width}" height="{height}" xmlns="http://www.w3.org/2000/svg" '
        f'font-family="monospace" font-size="11">',
        f'<text x="{width / 2}" y="18" text-anchor="middle" font-size="14">{html.escape(title)}</text>',
    ]
    for node, x, depth in rects:
        px = 10 + x * scale
        pw = node["value"] * scale
        py = height - 10 - (depth + 1) * row
        percent = 100.0 * node["value"] / total
        label = html.escape(node["name"])
        out.append(
            f'<g><title>{label} ({node["value"]} samples, {percent:.2f}%)</title>'
            f'<rect x="{px:.1f}" y="{py}" width="{max(pw - 0.5, 0.1):.1f}" height="{row - 1}" '
            f'fill="{color(node["name"])}"/>'
        )
        chars = int(pw / 7)
        if chars >= 3:
            text = node["name"] if len(node["name"]) <= chars else node["name"][: chars - 2] + ".."
            out.append(f'<text x="{px + 2:.1f}" y="{py + row - 4}">{html.escape(text)}</text>')
        out.append("</g>")
    out.append("</svg>")
    return "\n".join(out) + "\n"


def top(folded, count):
    total = sum(folded.values()) or 1
    leaf = collections.Counter()
    inclusive = collections.Counter()
    for stack, samples in folded.items():
        frames = stack.split(";")
        leaf[frames[-1]] += samples
        for frame in set(frames):
            inclusive[frame] += samples
    lines = [f"{total} samples", "", "self (leaf) %:"]
    lines += [f"{100.0 * n / total:6.2f}  {name[:150]}" for name, n in leaf.most_common(count)]
    lines += ["", "inclusive %:"]
    lines += [f"{100.0 * n / total:6.2f}  {name[:150]}" for name, n in inclusive.most_common(count)]
    return "\n".join(lines) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--folded", help="write folded stacks here")
    parser.add_argument("--svg", help="write the flame graph SVG here")
    parser.add_argument("--title", default="flame graph")
    parser.add_argument("--min-percent", type=float, default=0.1)
    parser.add_argument("--top", type=int, help="print the N hottest self and inclusive frames")
    args = parser.parse_args()
    folded = fold(read_stacks(sys.stdin))
    if args.folded:
        with open(args.folded, "w") as f:
            for stack, n in sorted(folded.items()):
                f.write(f"{stack} {n}\n")
    if args.svg:
        with open(args.svg, "w") as f:
            f.write(svg(folded, args.title, args.min_percent))
    if args.top:
        sys.stdout.write(top(folded, args.top))


if __name__ == "__main__":
    main()
