"""The efficiency benchmark runs and reports what the README shows (a tiny backbone: mechanics, not numbers)."""

import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(__file__))


@pytest.mark.slow
def test_efficiency_benchmark_reports_rows_ratios_and_targets(tmp_path):
    out = tmp_path / "rows.json"
    command = [sys.executable, os.path.join(ROOT, "benchmarks", "efficiency.py"), "--size", "tiny", "--steps", "1"]
    command += ["--methods", "mitp,mitp_cached,lora", "--json", str(out)]
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=600, env=dict(os.environ, HF_HUB_OFFLINE="1")
    )
    assert done.returncode == 0, done.stderr[-3000:]
    rows = {r["method"]: r for r in json.loads(out.read_text())["rows"]}
    assert set(rows) == {"frozen", "mitp", "mitp_cached", "lora"}
    assert rows["frozen"]["trainable_params"] == 0 and rows["frozen"]["train_ratio"] == 1.0
    assert rows["mitp"]["trainable_params"] == rows["mitp_cached"]["trainable_params"] > 0
    assert all(r["peak_bytes"] > 0 and r["train_s"] > 0 for r in rows.values())
    assert "| MITP (defaults: K=4, M=8, h=512) |" in done.stdout
    assert "extraction cache speed-up of a training step" in done.stdout
