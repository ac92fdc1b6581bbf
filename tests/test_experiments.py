"""`sarvit experiment`: statistics against hand-computed values, the report from fake run folders, resumability."""
from __future__ import annotations

import json
import math
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from sarvit.errors import SarvitError
from sarvit.experiments import GRIDS, get_grid, paired_difference, plan_runs, run_state, scale_flags, summarize
from sarvit.cli import parse_args
from sarvit.experiments.commands import parse_seeds, run_experiment
from sarvit.experiments.report import write_report

T_975_DF2 = 4.302652729911275   # Student t, two-sided 95 %, 2 degrees of freedom (tables: 4.303)


# ---- statistics ----

def test_summarize_mean_and_sample_std():
    summary = summarize([1.0, 2.0, 3.0, 4.0])
    assert summary.n == 4 and summary.mean == pytest.approx(2.5)
    assert summary.std == pytest.approx(math.sqrt(5 / 3))        # sum of squares 5, n - 1 = 3
    assert summarize([7.0]).std is None and summarize([]).n == 0


def test_paired_difference_against_hand_computed_interval():
    arm, base = {0: 3.0, 1: 5.0, 2: 4.0}, {0: 1.0, 1: 2.0, 2: 2.0}   # differences 2, 3, 2
    difference = paired_difference(arm, base)
    std = math.sqrt(1 / 3)                                             # ((1/9 + 4/9 + 1/9) / 2) ** 0.5
    half = T_975_DF2 * std / math.sqrt(3)
    assert difference.n == 3 and difference.mean == pytest.approx(7 / 3) and difference.std == pytest.approx(std)
    assert (difference.ci_low, difference.ci_high) == pytest.approx((7 / 3 - half, 7 / 3 + half))
    assert difference.within_noise is False and "higher" in difference.verdict()


def test_paired_difference_within_noise_and_pairs_only_common_seeds():
    difference = paired_difference({0: 11.0, 1: 9.0, 2: 10.5, 5: 99.0}, {0: 10.0, 1: 10.0, 2: 10.0})
    assert difference.n == 3 and difference.mean == pytest.approx(0.5 / 3)   # seed 5 has no baseline
    assert difference.within_noise is True and "within noise" in difference.verdict()
    single = paired_difference({0: 2.0}, {0: 1.0})
    assert single.n == 1 and single.ci_low is None and single.within_noise is None


def test_two_agreeing_seeds_give_no_verdict():
    # Accuracies on one validation set are multiples of 1/N: two seeds can agree exactly, making a zero-width
    # interval; two pairs are too few to call that a difference.
    two = paired_difference({0: 19.5, 1: 19.5}, {0: 17.5, 1: 17.5})
    assert two.n == 2 and two.ci_low == pytest.approx(2.0) and two.within_noise is None
    assert two.verdict() == "cannot tell (2 paired seeds; 3 needed)"


# ---- grids ----

def _resolved(flags):
    from sarvit.train.config import resolve_config

    given = vars(parse_args(["train", *flags]))
    return resolve_config({key: value for key, value in given.items() if key not in ("run", "command")})


@pytest.mark.parametrize("row, expected", [
    ("A-baseline", (False, False, False, False)), ("B-no-msa-skip", (False, True, False, False)),
    ("C-no-msa-skip-no-ln", (False, True, True, False)), ("D-C-no-mlp-skip", (False, True, True, True)),
    ("E-loss-only", (True, False, False, False)), ("F-sar", (True, True, True, False))])
def test_ablation_rows_switch_the_parts_of_table_1c(row, expected):
    config = _resolved(get_grid("ablation").cell(row).flags + scale_flags("tiny", get_grid("ablation"), "synthetic"))
    assert (config["sar_loss"], config["remove_last_skip"], config["remove_last_norm"],
            config["remove_last_mlp_skip"]) == expected


@pytest.mark.parametrize("scale", ["tiny", "small", "paper"])
def test_every_cell_parses_as_train_options(scale):
    from sarvit.train.config import OPTION_NAMES

    for grid in GRIDS.values():
        if grid.command != "train":
            continue  # `sarvit pretrain` grids: tests/test_ssl_grid.py
        for cell in grid.cells:
            if "--reg" in cell.flags and "reg" not in OPTION_NAMES:
                continue  # `sarvit train --reg` arrives with the regularizer registry
            config = _resolved(scale_flags(scale, grid, "synthetic") + cell.flags)
            if scale == "paper":
                # ViT-S/16 for the ViT grids; the hybrids keep their own widths (the model's default)
                assert config["epochs"] == grid.paper_epochs
                assert config["embed_dim"] == (None if grid.own_models else 384)


@pytest.mark.parametrize("data_set", ["synthetic", "cifar10"])
def test_paper_scale_trains_with_the_deit_recipe_as_resolved(data_set):
    """The paper scale names the recipe; its hyper-parameters are those of `sarvit train --recipe deit` (DeiT's:
    lr 5e-4 per 512 images, 5 warm-up epochs, mixup 0.8 / cutmix 1.0, EMA 0.99996, ...), on the synthetic set
    too, where a run without --recipe gets the quick recipe's."""
    keys = ("batch_size", "lr", "warmup_epochs", "min_lr", "drop_path", "mixup", "cutmix", "model_ema",
            "model_ema_decay", "repeated_aug", "reprob", "aa", "crop_scale", "weight_decay", "smoothing")
    data = ["--data-set", data_set] + (["--data-path", "/nonexistent"] if data_set != "synthetic" else [])
    for grid in (get_grid("ablation"), get_grid("hybrids")):
        paper = _resolved([*data, *scale_flags("paper", grid, data_set)])
        deit = _resolved([*data, "--recipe", "deit"])
        assert paper["recipe"] == "deit"
        assert {key: paper[key] for key in keys} == {key: deit[key] for key in keys}
    assert (deit["lr"], deit["warmup_epochs"], deit["mixup"], deit["model_ema_decay"]) == (5e-4, 5, 0.8, 0.99996)
    if data_set == "synthetic":
        assert _resolved(data)["recipe"] == "quick"


def test_seeds_and_pass_through_options():
    assert parse_seeds("3") == [0, 1, 2] and parse_seeds("0,4,7") == [0, 4, 7]
    with pytest.raises(SarvitError):
        parse_seeds("1,1")
    args = parse_args(["experiment", "ablation", "--seeds", "2", "--", "--lr", "1e-3", "--epochs", "5"])
    assert (args.name, args.seeds, args.train_args) == ("ablation", "2", ["--lr", "1e-3", "--epochs", "5"])
    with pytest.raises(SarvitError, match="--seed is set by the experiment"):
        plan_runs(get_grid("jaccard"), Path("x"), [0], (), ["--seed", "4"])


@pytest.mark.parametrize("spelt, owned", [("--resum", "--resume"), ("--conf=a.yaml", "--config"),
                                          ("--finet", "--finetune"), ("--output_dir", "--output-dir")])
def test_the_guard_reads_options_as_the_parser_resolves_them(spelt, owned):
    with pytest.raises(SarvitError, match=f"{spelt.split('=')[0]} \\({owned}\\) is set by the experiment"):
        plan_runs(get_grid("jaccard"), Path("x"), [0], (), ["--lr", "0.1", spelt, "x"])
    plan_runs(get_grid("jaccard"), Path("x"), [0], (), ["--lr", "0.1", "--epochs", "3"])  # not owned: fine


# ---- report from fake run folders ----

def _fake_run(folder: Path, top1: list, entropy: float, jaccard: float, epochs: int) -> None:
    folder.mkdir(parents=True)
    (folder / "config.yaml").write_text(yaml.safe_dump({"epochs": epochs}))
    lines = [{"epoch": e, "val_top1": v, "val_entropy": entropy, "val_jaccard": jaccard} for e, v in enumerate(top1)]
    (folder / "log.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))


def test_report_from_fake_run_folders(tmp_path):
    grid = get_grid("jaccard")
    for seed, (base, sar) in enumerate([(30.0, 34.0), (32.0, 35.0), (31.0, 36.0)]):
        _fake_run(tmp_path / "baseline" / f"seed{seed}", [base - 5, base, base - 1], 0.5, 40.0 + seed, epochs=3)
        _fake_run(tmp_path / "sar" / f"seed{seed}", [sar - 5, sar - 2, sar], 0.1, 50.0 + seed, epochs=3)
    _fake_run(tmp_path / "sar" / "seed3", [10.0, 11.0], 0.1, 50.0, epochs=3)   # interrupted: left out
    paths = write_report(grid, tmp_path, [0, 1, 2, 3])
    results = json.loads(paths["results"].read_text())
    baseline, sar = results["cells"]["baseline"], results["cells"]["sar"]
    assert baseline["summary"]["best_top1"]["mean"] == pytest.approx(31.0)
    assert baseline["summary"]["final_top1"]["mean"] == pytest.approx(30.0)
    assert sar["summary"]["best_top1"] == pytest.approx({"n": 3, "mean": 35.0, "std": 1.0})
    difference = sar["vs_baseline"]["best_top1"]                      # 4, 3, 5: mean 4, std 1
    half = T_975_DF2 / math.sqrt(3)
    assert (difference["mean"], difference["ci_low"], difference["ci_high"]) == pytest.approx((4, 4 - half, 4 + half))
    assert difference["within_noise"] is False
    assert sar["vs_baseline"]["jaccard"]["mean"] == pytest.approx(10.0)
    assert results["missing"] == ["baseline/seed3", "sar/seed3"]
    assert results["papers"]["rows"]["ViT-S/16 + SAR"] == "31.19 (+12.01)"
    report = paths["report"].read_text()
    assert "| sar | `--sar` | 3 | 35.00 ± 1.00 |" in report and "beyond the noise: sar (+4.00)" in report
    for name in ("bars", "curves"):
        assert paths[name].stat().st_size > 0


def test_a_grid_without_paper_figures_gets_no_empty_table(tmp_path):
    grid = get_grid("real")
    for cell in grid.cells[:2]:
        _fake_run(tmp_path / cell.name / "seed0", [20.0, 30.0], 0.2, 0.0, epochs=2)
    report = write_report(grid, tmp_path, [0])["report"].read_text()
    assert "no paper figure" in report and "| paper row |" not in report
    assert "| paper row |" in write_report(get_grid("jaccard"), tmp_path / "j", [0])["report"].read_text()


def test_sweep_plot_for_subset_grid(tmp_path):
    grid = get_grid("subsets")
    for cell in grid.cells:
        for seed in (0, 1, 2):
            _fake_run(tmp_path / cell.name / f"seed{seed}", [10 * cell.x + seed], 1.0, 30.0, epochs=1)
    paths = write_report(grid, tmp_path, [0, 1, 2])
    assert paths["accuracy_vs_subset_ratio"].is_file()
    assert "within noise" in paths["report"].read_text()   # every arm equals its baseline at each ratio


# ---- resumability with a fake `sarvit train` ----

FAKE_TRAIN = textwrap.dedent("""
    import json, os, sys
    from pathlib import Path
    args = sys.argv[1:]
    def value(flag):
        return args[len(args) - 1 - args[::-1].index(flag) + 1]
    out, epochs, seed = Path(value("--output-dir")), int(value("--epochs")), value("--seed")
    with open(os.environ["FAKE_CALLS"], "a") as calls:
        calls.write(f"{out.parent.name}/seed{seed}{' resume' if '--resume' in args else ''}\\n")
    start = 0
    held = out / "held_by_last_pth.jsonl"  # the epoch line a kill kept out of log.jsonl (last.pth holds it)
    if "--resume" in args and held.is_file():  # as sarvit train: the log is rewritten from last.pth, then
        with open(out / "log.jsonl", "a") as log:   # "nothing to train" (exit code 2)
            log.write(held.read_text())
        held.unlink()
        sys.exit(2)
    if "--resume" in args:
        start = len((out / "log.jsonl").read_text().splitlines())
    else:
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.yaml").write_text(f"epochs: {epochs}\\n")
        (out / "log.jsonl").write_text("")
    for epoch in range(start, epochs):
        with open(out / "log.jsonl", "a") as log:
            log.write(json.dumps({"epoch": epoch, "val_top1": 10.0 + epoch + int(seed)}) + "\\n")
        (out / "last.pth").write_text("checkpoint")
        if os.environ.get("FAKE_CRASH") == f"{out.parent.name}/seed{seed}" and "--resume" not in args:
            sys.exit(3)
    if os.environ.get("FAKE_KILL_BEFORE_LAST_LINE") == f"{out.parent.name}/seed{seed}" and "--resume" not in args:
        lines = (out / "log.jsonl").read_text().splitlines(keepends=True)
        (out / "log.jsonl").write_text("".join(lines[:-1]))
        held.write_text(lines[-1])
        sys.exit(137)
""")


def test_interrupted_grid_resumes_and_reruns_nothing_finished(tmp_path, monkeypatch, capsys):
    script, calls = tmp_path / "fake_train.py", tmp_path / "calls.txt"
    script.write_text(FAKE_TRAIN)
    monkeypatch.setenv("FAKE_CALLS", str(calls))
    argv = ["experiment", "jaccard", "--seeds", "2", "--jobs", "2", "--exp-dir", str(tmp_path / "exp"), "--",
            "--epochs", "3"]

    def experiment(*extra):
        calls.write_text("")
        code = run_experiment(parse_args(argv + list(extra)), train_command=[sys.executable, str(script)])
        return code, sorted(calls.read_text().split("\n")[:-1])

    monkeypatch.setenv("FAKE_CRASH", "sar/seed1")
    code, ran = experiment()
    assert code == 1 and ran == ["baseline/seed0", "baseline/seed1", "sar/seed0", "sar/seed1"]
    assert "sar/seed1 (exit code 3)" in capsys.readouterr().out
    assert run_state(tmp_path / "exp" / "sar" / "seed1") == "resumable"
    monkeypatch.delenv("FAKE_CRASH")
    code, ran = experiment()
    assert code == 0 and ran == ["sar/seed1 resume"]
    assert run_state(tmp_path / "exp" / "sar" / "seed1") == "finished"
    code, ran = experiment()
    assert code == 0 and ran == []
    results = json.loads((tmp_path / "exp" / "results.json").read_text())
    assert results["cells"]["sar"]["summary"]["final_top1"]["n"] == 2 and results["missing"] == []
    with pytest.raises(SarvitError, match="started with other options"):
        experiment("--lr", "0.1")


def test_a_run_killed_between_its_last_checkpoint_and_its_log_line_counts_as_done(tmp_path, monkeypatch, capsys):
    script, calls = tmp_path / "fake_train.py", tmp_path / "calls.txt"
    script.write_text(FAKE_TRAIN)
    monkeypatch.setenv("FAKE_CALLS", str(calls))
    argv = ["experiment", "jaccard", "--seeds", "1", "--exp-dir", str(tmp_path / "exp"), "--", "--epochs", "2"]
    monkeypatch.setenv("FAKE_KILL_BEFORE_LAST_LINE", "sar/seed0")
    assert run_experiment(parse_args(argv), train_command=[sys.executable, str(script)]) == 1
    assert run_state(tmp_path / "exp" / "sar" / "seed0") == "resumable"
    monkeypatch.delenv("FAKE_KILL_BEFORE_LAST_LINE")
    capsys.readouterr()
    assert run_experiment(parse_args(argv), train_command=[sys.executable, str(script)]) == 0
    assert "sar/seed0 done" in capsys.readouterr().out
    assert run_state(tmp_path / "exp" / "sar" / "seed0") == "finished"


def test_the_regularizers_grid_has_a_cell_per_registered_term():
    from sarvit.losses import REGULARIZERS

    cells = get_grid("regularizers").cells
    assert [cell.name for cell in cells] == ["baseline", *REGULARIZERS]
    assert all(cell.flags == ("--no-sar", "--reg", cell.name) for cell in cells[1:])


def test_seeds_run_in_several_calls_are_all_recorded_and_reported(tmp_path, monkeypatch, capsys):
    script, calls = tmp_path / "fake_train.py", tmp_path / "calls.txt"
    script.write_text(FAKE_TRAIN)
    monkeypatch.setenv("FAKE_CALLS", str(calls))
    exp = tmp_path / "exp"

    def experiment(seeds, *extra):
        argv = ["experiment", "jaccard", "--seeds", seeds, "--exp-dir", str(exp), *extra, "--", "--epochs", "1"]
        return run_experiment(parse_args(argv), train_command=[sys.executable, str(script)])

    def runs_reported():
        return json.loads((exp / "results.json").read_text())["cells"]["sar"]["summary"]["final_top1"]["n"]

    assert experiment("0,1") == 0 and experiment("1,2") == 0
    assert json.loads((exp / "experiment.json").read_text())["seeds"] == [0, 1, 2] and runs_reported() == 3
    assert experiment("5", "--report-only") == 0
    assert "have seeds 0, 1, 2 (its experiment.json); reporting those, not this call's 0, 1, 2, 3, 4" in (
        capsys.readouterr().out) and runs_reported() == 3
    record = (exp / "experiment.json").read_text()
    with pytest.raises(SarvitError, match="started with other options"):   # the same seeds, other options
        experiment("3", "--scale", "quick")
    with pytest.raises(SarvitError, match=r"holds the runs of another experiment \(grid 'jaccard', scale 'tiny'"):
        experiment("3,4", "--scale", "quick")                              # new seeds, other options
    assert (exp / "experiment.json").read_text() == record and not (exp / "sar" / "seed3").exists()
    (exp / "experiment.json").write_text("[]")
    assert experiment("1,2") == 0 and "experiment.json: expected {grid" in capsys.readouterr().out   # named, replaced
    assert json.loads((exp / "experiment.json").read_text())["seeds"] == [1, 2]
