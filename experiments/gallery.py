"""The README's gallery: each experiment's headline figure from a suite run.

Regenerate (runs every quick preset, then writes the gallery)::

    make gallery

or, from a finished suite directory::

    python -m experiments.gallery runs/suite/<time>

Writes ``docs/gallery/<experiment>.png`` (the first headline figure,
scaled to 900 px wide, 1440 for a row of panels; a 256-colour PNG well
under 1 MB) and rewrites the part of ``README.md`` between ``<!-- gallery:start
-->`` and ``<!-- gallery:end -->``: one entry per experiment, its figure and
its verdict's sentences (as many as fit in about 400 characters), with the
numbers of that run.

What you should see: ``make gallery`` took 51 minutes on a 2-core AMD EPYC
(the suite; the gallery itself a few seconds) and wrote 16 PNGs of 14-66 KB
(888 KB in all); the README section lists the experiments by name, each
with its quick runtime, its claim in italics and the verdict in numbers
(e.g. "batch size 64 ended 2.3 ± 1.9 points below batch size 32 in test
accuracy (lr 0.01)"). An experiment without a finished run in the suite
directory (no headline figure or no report.html) is named on the command
line and left out.
"""

from __future__ import annotations

import argparse
import os
import sys

from experiments.__main__ import catalog, duration
from experiments.suite import _verdict

START, END = "<!-- gallery:start -->", "<!-- gallery:end -->"
MAX_BYTES = 1_000_000


def shrink(src: str, dst: str, width: int = 900) -> int:
    """Scale ``src`` to ``width`` px (never up) as a 256-colour PNG; bytes."""
    from PIL import Image

    with Image.open(src) as im:
        im = im.convert("RGB")
        if im.width > 3 * im.height:  # a row of panels: keep its text legible
            width = int(width * 1.6)
        if im.width > width:
            im = im.resize((width, round(im.height * width / im.width)), Image.LANCZOS)
        im = im.quantize(colors=256, method=Image.Quantize.MEDIANCUT)
        im.save(dst, optimize=True)
    size = os.path.getsize(dst)
    if size > MAX_BYTES:
        raise ValueError(f"{dst} is {size} bytes, over the gallery's 1 MB")
    return size


def build(suite_dir: str, readme: str, out_dir: str) -> list[str]:
    os.makedirs(out_dir, exist_ok=True)
    entries, missing = [], []
    for e in catalog():
        fig = next(
            (os.path.join(suite_dir, e["name"], "plots", f) for f in e["headline"]
             if os.path.isfile(os.path.join(suite_dir, e["name"], "plots", f))),
            None,
        )  # fmt: skip
        report = os.path.join(suite_dir, e["name"], "report.html")
        if fig is None or not os.path.isfile(report):
            missing.append(e["name"])
            continue
        dst = os.path.join(out_dir, f"{e['name']}.png")
        shrink(fig, dst)
        verdict = _verdict(os.path.dirname(report))
        sentence = verdict[0] if verdict else ""
        for more in verdict[1:]:  # more sentences while the entry stays short
            if len(sentence) + len(more) > 400:
                break
            sentence += " " + more
        entries.append((e, os.path.relpath(dst, os.path.dirname(readme) or "."),
                        sentence))  # fmt: skip
    intro = (
        "Each experiment's headline figure from its quick preset on a 2-core CPU "
        "(built-in Fashion-MNIST); regenerate with `make gallery`."
    )
    lines = [START, "", intro, ""]
    for e, rel, sentence in entries:
        lines += [
            f"### {e['name']} ({duration(e['quick_s'])})",
            "",
            f"*{e['claim']}* {sentence}",
            "",
            f"![{e['name']}]({rel})",
            "",
        ]
    lines.append(END)
    text = open(readme, encoding="utf-8").read()
    if START in text and END in text:
        head, rest = text.split(START, 1)
        text = head + "\n".join(lines) + rest.split(END, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n## Gallery\n\n" + "\n".join(lines) + "\n"
    with open(readme, "w", encoding="utf-8") as f:
        f.write(text)
    return missing


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m experiments.gallery",
        description="Write the README gallery from a finished suite directory.",
    )
    parser.add_argument("suite_dir", help="the --out of python -m experiments.suite")
    parser.add_argument("--readme", default="README.md", help="(default: README.md)")
    parser.add_argument(
        "--out", default=os.path.join("docs", "gallery"),
        help="where the figures go (default: docs/gallery)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    if not os.path.isdir(args.suite_dir):
        parser.exit(2, f"{parser.prog}: error: no suite directory {args.suite_dir}\n")
    missing = build(args.suite_dir, args.readme, args.out)
    if missing:
        print(f"no finished run (figure + report) for: {', '.join(missing)}")
    print(f"gallery: {args.out} and {args.readme}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
