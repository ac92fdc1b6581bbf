"""How good are the features a self-supervised run starts from? k-NN top-1 (k 20, T 0.07, as `sarvit knn`) of
raw pixels and of the `sarvit pretrain` network at initialisation ([CLS] and mean patch token), the training split
voting for the evaluation split; also with the training split seen through one augmented global crop (how much
of the label the augmentation leaves). Scale of the features' spread: `sarvit.train.ssl.spread` (1: spread over
the sphere, 0: one vector).

    python benchmarks/ssl_init_features.py --method dino                        # the synthetic set
    python benchmarks/ssl_init_features.py --method dino --data-set folder --data-path DIGITS/digits-plain
"""
import argparse

import torch
import torch.nn.functional as F

from sarvit.data import build_dataset
from sarvit.metrics import knn_scores, topk_accuracy
from sarvit.train.ssl import spread
from sarvit.train.ssl.pretrain import build_task, knn_eval_sets, pretrain_views  # the splits and views `sarvit pretrain` reads
from sarvit.train.ssl.recipes import resolve_pretrain_config


def knn_top1(bank, bank_labels, queries, labels, num_classes):
    scores = knn_scores(F.normalize(bank, dim=1), bank_labels, F.normalize(queries, dim=1), num_classes, 20, 0.07)
    return topk_accuracy(scores, labels)["top1"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--method", default="dino", choices=["dino", "mocov3"])
    parser.add_argument("--data-set", default="synthetic")
    parser.add_argument("--data-path")
    parser.add_argument("--input-size", type=int)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    typed = {"method": args.method, "data_set": args.data_set, "seed": args.seed,
             **({"data_path": args.data_path} if args.data_path else {}),
             **({"input_size": args.input_size} if args.input_size else {})}
    config = resolve_pretrain_config(typed)
    bank_set, query_set, num_classes = knn_eval_sets(config)
    (bank, bank_labels), (queries, labels) = ([torch.stack(column) if index == 0 else torch.tensor(column)
                                               for index, column in enumerate(zip(*[(x, y) for x, y, *_ in s]))]
                                              for s in (bank_set, query_set))
    augmented_set, _ = build_dataset(config["data_set"], train=True, transform=pretrain_views(config),
                                     root=config.get("data_path"),
                                     **({"img_size": config["input_size"], "num_samples": len(bank)}
                                        if config["data_set"] == "synthetic" else {}))
    augmented = torch.stack([augmented_set[index][0][0] for index in range(len(bank))])
    torch.manual_seed(args.seed)
    task, _ = build_task(config, steps_per_epoch=1)
    network = task.evaluation_model().eval()
    with torch.no_grad():
        bank_out, query_out, augmented_out = (network.forward_features(x) for x in (bank, queries, augmented))
    rows = {
        "raw pixels": knn_top1(bank.flatten(1), bank_labels, queries.flatten(1), labels, num_classes),
        "raw pixels, augmented bank": knn_top1(augmented.flatten(1), bank_labels, queries.flatten(1), labels,
                                               num_classes),
        "init [CLS]": knn_top1(bank_out[:, 0], bank_labels, query_out[:, 0], labels, num_classes),
        "init mean patch token": knn_top1(bank_out[:, 1:].mean(1), bank_labels, query_out[:, 1:].mean(1), labels,
                                          num_classes),
        "init [CLS], augmented bank": knn_top1(augmented_out[:, 0], bank_labels, query_out[:, 0], labels,
                                               num_classes),
    }
    print(f"{args.data_set} {args.data_path or ''} ({len(bank)} / {len(queries)} images, {num_classes} classes), "
          f"{args.method} network at {config['input_size']} px, seed {args.seed}:")
    for name, value in rows.items():
        print(f"  k-NN top-1 {name:<28} {value:6.2f} %")
    print(f"  spread of the init [CLS] features      {float(spread(bank_out[:, 0])):6.3f}")


if __name__ == "__main__":
    main()
