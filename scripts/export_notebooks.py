"""Execute every notebook in notebooks/ on one sweep's records and export it to HTML.

    python scripts/export_notebooks.py --records reports/h200            # -> reports/notebooks/*.html
    python scripts/export_notebooks.py                                   # runs the smoke grid first

The stored notebooks stay without outputs; the executed copies live only in the exports. HTML needs
nbconvert (``pip install nbconvert``); without it, each notebook's figures are written as PNG files
(NAME-CELL-N.png) and its markdown/text outputs as NAME.md instead, and the script says so.
"""
from __future__ import annotations

import argparse
import base64
import sys
import tempfile
import time
from pathlib import Path

import nbclient
import nbformat

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"


def execute(path: Path, records_dir: Path | None, out_dir: Path | None, timeout: int) -> nbformat.NotebookNode:
    """Run one notebook top to bottom with RECORDS_DIR (and OUT_DIR) set after its stored parameters."""
    nb = nbformat.read(path, as_version=4)
    cell = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    cell.source += (f"\nRECORDS_DIR = {str(records_dir) if records_dir else None!r}"
                    f"\nOUT_DIR = {str(out_dir) if out_dir else None!r}\n")
    nbclient.NotebookClient(nb, kernel_name="python3", timeout=timeout,
                            resources={"metadata": {"path": str(path.parent)}}).execute()
    return nb


def write_png_fallback(nb: nbformat.NotebookNode, out: Path, name: str) -> list[Path]:
    """Without nbconvert: every image output as a PNG, the markdown and text outputs as one .md."""
    written, text = [], [f"# {name}\n"]
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "markdown":
            text.append(cell.source + "\n")
            continue
        for n, o in enumerate(cell.get("outputs", [])):
            data = o.get("data", {})
            if "image/png" in data:
                p = out / f"{name}-cell{i:02d}-{n}.png"
                p.write_bytes(base64.b64decode(data["image/png"]))
                written.append(p)
                text.append(f"![{p.name}]({p.name})\n")
            elif "text/markdown" in data:
                text.append(data["text/markdown"] + "\n")
            elif o.get("output_type") == "stream":
                text.append("```\n" + o["text"] + "```\n")
    md = out / f"{name}.md"
    md.write_text("\n".join(text))
    return [md, *written]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--records", type=Path, default=None,
                   help="a sweep directory (records.jsonl + summary.json); default: run the smoke grid now")
    p.add_argument("--out", type=Path, default=ROOT / "reports" / "notebooks")
    p.add_argument("--timeout", type=int, default=600, help="seconds per cell")
    args = p.parse_args(argv)
    records = args.records.resolve() if args.records else None
    if records and not (records / "summary.json").exists():
        print(f"export_notebooks: no summary.json in {records}", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    try:
        from nbconvert import HTMLExporter
    except ImportError:
        HTMLExporter = None
        print("export_notebooks: nbconvert is not installed; writing PNG figures and markdown instead of HTML",
              file=sys.stderr)
    sweep_dir = None if records else Path(tempfile.mkdtemp(prefix="parity-smoke-"))  # run it once, reuse it
    for path in sorted(NOTEBOOKS.glob("*.ipynb")):
        t0 = time.monotonic()
        nb = execute(path, records or (sweep_dir if sweep_dir and (sweep_dir / "summary.json").exists() else None),
                     sweep_dir, args.timeout)
        if HTMLExporter is not None:
            html, _ = HTMLExporter().from_notebook_node(nb)
            written = [args.out / f"{path.stem}.html"]
            written[0].write_text(html)
        else:
            written = write_png_fallback(nb, args.out, path.stem)
        print(f"{path.name}: {time.monotonic() - t0:.1f} s -> {', '.join(str(w) for w in written)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
