"""`cityops evaluate` replays a labelled scenario through the real broker and engine."""

import re
from pathlib import Path

import yaml

from cityops.kernel.settings import Settings
from tests.conftest import ROOT, run_cityops


def test_evaluate_prints_the_score_of_a_feeder_outage(settings: Settings, tmp_path: Path) -> None:
    doc = yaml.safe_load((ROOT / "scenarios" / "feeder_outage.yaml").read_text(encoding="utf-8"))
    doc["duration"] = "3h"  # the library's 8 h, shortened; the outage moved into the window
    for inc, (at, lasts) in zip(
        doc["incidents"], [("1h", "1h30m"), ("1h30m", "1h"), ("2h", "30m")], strict=True
    ):
        inc["at"], inc["duration"] = at, lasts
    scenario = tmp_path / "feeder_outage.yaml"
    scenario.write_text(yaml.safe_dump(doc, allow_unicode=True, sort_keys=False), encoding="utf-8")

    r = run_cityops(
        settings, "evaluate", str(scenario), "--log-dir", str(tmp_path / "logs"), timeout=300
    )
    assert r.returncode == 0, r.stderr[-3000:]
    assert "== feeder_outage" in r.stdout
    rows = {
        m.group(1): (int(m.group(2)), float(m.group(3)))
        for m in re.finditer(
            r"^(line_outage|switch_close|overload)\s+(\d+)\s+([\d.]+)", r.stdout, re.M
        )
    }
    assert set(rows) == {"line_outage", "switch_close", "overload"}, r.stdout
    # thresholds find the outage's dark buses at once (docs/alerts.md)
    assert rows["line_outage"] == (1, 1.0), r.stdout
