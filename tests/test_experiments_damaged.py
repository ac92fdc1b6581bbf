"""A damaged experiment folder is one line or is read around, never a traceback; results.json is strict JSON."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import yaml

from sarvit.errors import SarvitError
from sarvit.experiments import get_grid, plan_runs, run_state
from sarvit.experiments.report import write_report
from sarvit.experiments.runner import run_grid


def fake_run(folder: Path, top1: list, epochs: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.yaml").write_text(yaml.safe_dump({"epochs": epochs}))
    lines = [{"epoch": e, "val_top1": v, "val_entropy": 0.5, "val_jaccard": 40.0} for e, v in enumerate(top1)]
    (folder / "log.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))


@pytest.mark.parametrize("content", ['{"args": ["--lr"', "[1, 2]", "\xff\xfe garbage", '{"args": "x"}'],
                         ids=["truncated", "not-an-object", "binary", "args-not-a-list"])
def test_a_damaged_command_record_is_one_line(tmp_path, content):
    plan = plan_runs(get_grid("jaccard"), tmp_path, [0], (), [])[0]
    plan.folder.mkdir(parents=True)
    (plan.folder / "command.json").write_text(content, errors="surrogateescape")
    with pytest.raises(SarvitError, match=r"command.json is damaged .*restore it, or remove that run's folder"):
        run_grid([plan], train_command=["false"])


def test_damaged_run_files_are_read_around(tmp_path):
    grid = get_grid("jaccard")
    fake_run(tmp_path / "baseline" / "seed0", [30.0, 31.0], epochs=2)
    fake_run(tmp_path / "sar" / "seed0", [33.0, float("nan")], epochs=2)       # a diverged last epoch
    (tmp_path / "sar" / "seed1").mkdir(parents=True)
    (tmp_path / "sar" / "seed1" / "config.yaml").write_text("- a\n- list\n")     # a YAML list
    (tmp_path / "sar" / "seed1" / "log.jsonl").write_text('[1]\n{"epoch": 0}\n')
    fake_run(tmp_path / "baseline" / "seed1", [20.0], epochs=1)
    with (tmp_path / "baseline" / "seed1" / "log.jsonl").open("a") as log:
        log.write('"not an object"\n{"epoch": 1, "val_top1": "high"}\n')
    assert run_state(tmp_path / "sar" / "seed1") == "new"
    paths = write_report(grid, tmp_path, [0, 1])
    text = paths["results"].read_text()
    assert "NaN" not in text
    results = json.loads(text)  # strict JSON
    assert results["cells"]["sar"]["runs"]["seed0"]["final_top1"] == 33.0   # the NaN is no figure
    assert results["cells"]["sar"]["runs"]["seed0"]["best_top1"] == 33.0
    assert results["cells"]["baseline"]["runs"]["seed1"]["final_top1"] == 20.0  # reading stops at the bad line
    assert "sar/seed1" in results["missing"]
    assert not math.isnan(results["cells"]["baseline"]["summary"]["best_top1"]["mean"])


def test_report_only_describes_the_runs_in_the_folder_not_its_own_options(tmp_path, capsys):
    from sarvit.cli import main

    fake_run(tmp_path / "baseline" / "seed0", [30.0, 31.0], epochs=2)
    fake_run(tmp_path / "sar" / "seed0", [33.0, 34.0], epochs=2)
    assert main(["experiment", "jaccard", "--report-only", "--exp-dir", str(tmp_path), "--seeds", "1"]) == 0
    report = (tmp_path / "report.md").read_text()
    assert "- scale:" not in report and "not run by `sarvit experiment`" in report  # assembled by hand
    (tmp_path / "experiment.json").write_text(json.dumps(
        {"grid": "jaccard", "scale": "quick", "data_set": "folder", "seeds": [0], "train_args": ["--epochs", "100"]}))
    assert main(["experiment", "jaccard", "--report-only", "--exp-dir", str(tmp_path), "--seeds", "1"]) == 0
    report = (tmp_path / "report.md").read_text()
    assert "- scale: quick" in report and "- data set: folder" in report
    assert "- extra train options: --epochs 100" in report


def test_report_only_reports_the_folders_seeds_and_refuses_another_grids_folder(tmp_path, capsys):
    from sarvit.cli import main

    for seed, (base, sar) in enumerate(((30.0, 33.0), (31.0, 35.0))):
        fake_run(tmp_path / "baseline" / f"seed{seed}", [base], epochs=1)
        fake_run(tmp_path / "sar" / f"seed{seed}", [sar], epochs=1)
    (tmp_path / "experiment.json").write_text(json.dumps(
        {"grid": "jaccard", "scale": "tiny", "data_set": "synthetic", "seeds": [0, 1], "train_args": []}))
    assert main(["experiment", "jaccard", "--report-only", "--exp-dir", str(tmp_path), "--seeds", "1"]) == 0
    assert "have seeds 0, 1 (its experiment.json); reporting those, not this call's 0" in capsys.readouterr().out
    results = json.loads((tmp_path / "results.json").read_text())
    assert set(results["cells"]["sar"]["runs"]) == {"seed0", "seed1"} and results["seeds"] == "0, 1"
    assert main(["experiment", "ablation", "--report-only", "--exp-dir", str(tmp_path)]) == 2
    assert "holds the runs of grid 'jaccard', not 'ablation'" in capsys.readouterr().err


@pytest.mark.parametrize("record", ["[]", "null", '{"grid": "jaccard"}', "{bad json",
                                    '{"grid": "jaccard", "scale": "tiny", "data_set": "synthetic", "seeds": [0, 0], '
                                    '"train_args": []}'], ids=["list", "null", "partial", "not-json", "repeated-seed"])
def test_a_damaged_experiment_record_is_named_and_replaced(tmp_path, capsys, record):
    from sarvit.cli import main

    fake_run(tmp_path / "baseline" / "seed0", [30.0], epochs=1)
    fake_run(tmp_path / "sar" / "seed0", [33.0], epochs=1)
    (tmp_path / "experiment.json").write_text(record)
    assert main(["experiment", "jaccard", "--report-only", "--exp-dir", str(tmp_path), "--seeds", "1"]) == 0
    assert "- runs: unknown (" in (tmp_path / "report.md").read_text()
    assert (tmp_path / "experiment.json").read_text() == record          # --report-only writes no record
