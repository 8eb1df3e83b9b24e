import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner


def test_model_cli_imports_without_torch():
    code = ("import sys; import model.cli; assert 'torch' not in sys.modules; print('ok')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


@pytest.mark.slow
def test_train_evaluate_export(tmp_path, tiny_cube_dir, tiny_raw, monkeypatch):
    from model.cli import model_app

    config = dict(tiny_raw, data=dict(tiny_raw["data"], cube=str(tiny_cube_dir)))
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(config))
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    result = runner.invoke(model_app, ["train", "--config", "tiny.yaml", "--out", "runs/tiny", "--no-progress"])
    assert result.exit_code == 0, result.output
    assert (Path("runs/tiny/unet/seed-0/log.csv").read_text().splitlines()[0]
            == "step,loss,bce,dice,recall,lr,seconds")
    result = runner.invoke(model_app, ["evaluate", "--run", "runs/tiny", "--no-progress"])
    assert result.exit_code == 0, result.output
    metrics = json.loads(Path("runs/tiny/metrics.json").read_text())
    assert set(metrics["regimes"]) == {"species", "region", "mixed"}
    assert set(metrics["regimes"]["region"]) == {"unet", "vit", "neighbourhood", "kriging"}
    assert "## Beside the paper" in Path("runs/tiny/report.md").read_text()
    result = runner.invoke(model_app, ["export", "--run", "runs/tiny"])
    assert result.exit_code == 0, result.output
    assert json.loads(Path("runs/tiny/model.json").read_text())["metrics"]["region"]["dice"]["mean"] is not None
    shutil.rmtree("runs")


def test_unknown_model_is_refused(tmp_path, tiny_raw):
    from model.cli import model_app

    (tmp_path / "c.yaml").write_text(yaml.safe_dump(tiny_raw))
    result = CliRunner().invoke(model_app, ["train", "--config", str(tmp_path / "c.yaml"), "--out",
                                            str(tmp_path / "r"), "--arch", "resnet"])
    assert result.exit_code == 1
    assert "configured: unet, vit" in result.output
