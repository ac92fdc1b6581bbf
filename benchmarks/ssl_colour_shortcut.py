"""Does colour let a self-supervised run tell images apart without learning their class? `sarvit pretrain` on an
image folder as it is and on a greyscale copy of it (same images, same labels, same seed), k-NN top-1 of the
evaluation network at initialisation and after each epoch (`sarvit pretrain`'s own log).

When every image has colours of its own that the class does not depend on (the synthetic set, the coloured
`digits-*` sets of `python -m sarvit.data.real_images`), the two views of an image share those colours and the
method can match views by colour alone ("feature suppression"): the greyscale copy removes that cue.

    python benchmarks/ssl_colour_shortcut.py ROOT/digits-plain --work /tmp/shortcut -- --epochs 10
"""
import argparse
import json
import sys
from pathlib import Path

from PIL import Image

from sarvit.cli import main as sarvit
from sarvit.data.loading import IMAGE_SUFFIXES


def grey_copy(source: Path, target: Path) -> Path:
    """Every image of ``source`` (``train/`` and ``val/`` class folders) in grey, three equal channels."""
    for path in sorted(source.rglob("*")):
        if path.suffix.lower() in IMAGE_SUFFIXES:
            out = target / path.relative_to(source)
            out.parent.mkdir(parents=True, exist_ok=True)
            Image.open(path).convert("L").convert("RGB").save(out.with_suffix(".png"))
    return target


def knn_curve(run: Path) -> list[float]:
    import torch

    start = torch.load(run / "last.pth", map_location="cpu", weights_only=False)["knn_at_init"]["top1"]
    return [start] + [json.loads(line)["knn_top1"] for line in (run / "log.jsonl").read_text().splitlines()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data_path", type=Path, help="an image folder (train/<class>/, val/<class>/)")
    parser.add_argument("--work", type=Path, required=True, help="where the grey copy and the runs go")
    parser.add_argument("--method", default="mocov3", choices=("mocov3", "dino"))
    argv = sys.argv[1:]
    split = argv.index("--") if "--" in argv else len(argv)  # after --: more `sarvit pretrain` options
    args, more = parser.parse_args(argv[:split]), argv[split + 1:]
    folders = {"colour": args.data_path, "grey": grey_copy(args.data_path, args.work / "grey")}
    for name, folder in folders.items():
        code = sarvit(["pretrain", "--method", args.method, "--no-sar", "--data-set", "folder", "--data-path",
                       str(folder), "--output-dir", str(args.work / name), "--overwrite", *more])
        if code:
            raise SystemExit(f"the {name} run failed (exit code {code}); see its output above")
    print(f"k-NN top-1 (%) of {args.method}, at initialisation then after each epoch:")
    for name in folders:
        print(f"  {name:6s} " + " ".join(f"{value:5.1f}" for value in knn_curve(args.work / name)))


if __name__ == "__main__":
    main()
