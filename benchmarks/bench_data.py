"""How long the built-in synthetic dataset takes to draw one item (PIL, one process)."""
import argparse
import time

from sarvit.data import SyntheticObjects


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--items", type=int, default=200)
    parser.add_argument("--sizes", type=int, nargs="+", default=[32, 64, 224])
    args = parser.parse_args()
    for size in args.sizes:
        dataset = SyntheticObjects(num_samples=args.items, img_size=size)
        start = time.perf_counter()
        for index in range(args.items):
            dataset[index]
        print(f"SyntheticObjects {size:>3} px: {(time.perf_counter() - start) / args.items * 1e3:.2f} ms per item")


if __name__ == "__main__":
    main()
