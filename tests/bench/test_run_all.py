"""bench/run_all.py: a quick run works in a scratch copy and never touches bench/results/."""

from __future__ import annotations

import json

from bench import run_all


def test_quick_runs_in_a_scratch_copy_and_records_skips(tmp_path, monkeypatch):
    script = tmp_path / "probe.py"
    monkeypatch.setattr(
        run_all,
        "BENCHES",
        {
            "probe": ("probe.json", ["probe.py"], ["probe.py", "--small"]),
            "heavy": ("heavy.json", ["heavy.py"], "no small mode: too slow"),
        },
    )
    work = tmp_path / "scratch"
    # the probe "benchmark" writes its results file next to itself, as the real scripts do
    run_all._scratch(work)
    script.write_text(
        "import json, pathlib, sys\n"
        "out = pathlib.Path(__file__).parent / 'results' / 'probe.json'\n"
        "out.write_text(json.dumps({'argv': sys.argv[1:]}))\n"
    )
    (work / "bench" / "probe.py").write_text(script.read_text())
    log = run_all.run(["probe", "heavy"], quick=True, workdir=work, nice=0)
    assert log["benches"]["heavy"] == {"skipped": "no small mode: too slow"}
    probe = log["benches"]["probe"]
    assert probe["returncode"] == 0 and probe["written"] is True
    assert json.loads((work / "bench" / "results" / "probe.json").read_text()) == {"argv": ["--small"]}
    assert json.loads((work / "bench" / "results" / "run_all.json").read_text())["quick"] is True
    assert (work / "docs" / "results.md").is_file()  # summarize ran in the scratch copy
    assert not (run_all.ROOT / "bench" / "results" / "probe.json").exists()  # the real folder is left alone
