"""`sarvit experiment ssl`: its cells are `sarvit pretrain` runs, scored by k-NN, linear probe and Jaccard."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from sarvit.cli import parse_args
from sarvit.experiments.grids import get_grid, scale_flags
from sarvit.experiments.report import write_report
from sarvit.train.ssl.recipes import resolve_pretrain_config


def _pretrain_config(flags) -> dict:
    args = parse_args(["pretrain", *flags])
    return resolve_pretrain_config({k: v for k, v in vars(args).items() if k not in ("run", "command")})


@pytest.mark.parametrize("scale", ["tiny", "small", "paper"])
def test_ssl_cells_parse_as_pretrain_options(scale):
    grid = get_grid("ssl")
    assert grid.command == "pretrain"
    for cell in grid.cells:
        config = _pretrain_config(scale_flags(scale, grid, "synthetic") + cell.flags)
        assert config["method"] == cell.name.split("-")[0]
        assert bool(config["regularizers"]) == cell.name.endswith("-sar")
        if scale == "paper":
            assert config["epochs"] == 300 and config["model"] == "vit_small_patch16_224"


def _fake_run(folder: Path, knn: list, linear: float, jaccard: float, init: float = 15.0) -> None:
    folder.mkdir(parents=True)
    (folder / "config.yaml").write_text(yaml.safe_dump({"epochs": len(knn)}))
    lines = [{"epoch": e, "knn_top1": v, "knn_init_top1": init, "val_jaccard": jaccard, "val_entropy": 1.0}
             for e, v in enumerate(knn)]
    lines[-1]["linear_top1"] = linear
    (folder / "log.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))


def test_ssl_report_pairs_each_method_with_its_sar_arm(tmp_path):
    grid = get_grid("ssl")
    for seed in (0, 1):
        _fake_run(tmp_path / "dino" / f"seed{seed}", [20.0, 30.0 + seed], 40.0 + seed, 30.0)
        _fake_run(tmp_path / "dino-sar" / f"seed{seed}", [20.0, 33.0 + seed], 42.0 + 2 * seed, 35.0, 16.0 + seed)
    paths = write_report(grid, tmp_path, [0, 1])
    results = json.loads(paths["results"].read_text())
    sar = results["cells"]["dino-sar"]
    assert sar["summary"]["best_top1"]["mean"] == pytest.approx(33.5)        # the k-NN top-1
    assert sar["vs_baseline"]["linear_top1"]["mean"] == pytest.approx(2.5)   # (2 + 3) / 2
    assert sar["vs_baseline"]["jaccard"]["mean"] == pytest.approx(5.0)
    assert results["missing"] == ["mocov3/seed0", "mocov3/seed1", "mocov3-sar/seed0", "mocov3-sar/seed1"]
    # the criterion: each run's final k-NN against its own network at initialisation, paired by seed
    assert results["cells"]["dino"]["over_init"]["mean"] == pytest.approx(15.5)   # (30 - 15 + 31 - 15) / 2
    assert sar["over_init"]["mean"] == pytest.approx(17.0) and sar["over_init"]["n"] == 2   # 33 - 16, 34 - 17
    assert results["cells"]["mocov3"]["over_init"] is None                        # no finished run
    report = paths["report"].read_text()
    assert "linear-probe top-1 (%)" in report and "79.90 (+2.48) / 35.28 (+0.22)" in report
    assert "| dino-sar | 2 | +17.00 [+17.00, +17.00] | cannot tell (2 paired seeds; 3 needed) |" in report


def test_ssl_report_judges_the_gain_over_initialisation_from_three_seeds(tmp_path):
    for seed, (init, final) in enumerate(((15.0, 20.0), (16.0, 19.0), (14.0, 20.0))):
        _fake_run(tmp_path / "mocov3" / f"seed{seed}", [init, final], 30.0, 20.0, init)
        _fake_run(tmp_path / "mocov3-sar" / f"seed{seed}", [init, init + seed - 1.0], 30.0, 20.0, init)
    report = write_report(get_grid("ssl"), tmp_path, [0, 1, 2])["report"].read_text()
    gains = report.split("## k-NN over the network at initialisation")[1]
    assert "| mocov3 | 3 | +4.67 [" in gains and "higher than at initialisation" in gains   # gains 5, 3, 6
    assert "| mocov3-sar | 3 | +0.00 [" in gains and "within noise (the interval contains 0)" in gains
