"""The HTML report renders in a real browser: images decode, no console errors, screenshot taken."""

import json
import re
import shutil
import subprocess

import pytest

from slimtorch.pipeline import recipe_from_dict, run_recipe
from slimtorch.report import pareto_front, write_report

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

PROBE = """<script>
window.__errors = [];
window.addEventListener('error', e => window.__errors.push(String(e.message || e.target && e.target.src)), true);
window.addEventListener('load', () => {
  const imgs = [...document.images];
  document.body.setAttribute('data-probe', JSON.stringify({
    images: imgs.length,
    decoded: imgs.filter(i => i.complete && i.naturalWidth > 0).length,
    errors: window.__errors,
    external: [...document.querySelectorAll('[src],[href]')].map(e => e.getAttribute('src') || e.getAttribute('href'))
      .filter(u => u && !u.startsWith('data:') && !u.startsWith('#')),
  }));
});
</script>"""


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "r"
    recipe = recipe_from_dict(
        {
            "name": "html",
            "model": {"name": "lenet300_100"},
            "data": {"name": "synthetic", "kwargs": {"n_train": 128, "n_test": 64}},
            "measure": {"latency_batches": [1], "latency_runs": 2},
            "stages": [
                {"type": "train", "epochs": 1, "batch_size": 32},
                {"type": "prune", "prune": {"sparsity": 0.8}},
                {"type": "kmeans", "bits": 4},
                {"type": "encode"},
            ],
        }
    )
    run_recipe(recipe, out, verbose=False)
    return out


def test_report_files_agree_with_results(run_dir):
    results = json.loads((run_dir / "results.json").read_text())
    report = json.loads((run_dir / "report.json").read_text())
    assert [r["name"] for r in report["records"]] == ["train", "prune", "kmeans", "encode"]
    for a, b in zip(report["records"], results["records"]):
        assert a["accuracy"] == b["accuracy"] and a["size_bytes"] == b["size_bytes"]
    md = (run_dir / "report.md").read_text()
    assert "| encode |" in md and "Compressed file, per layer" in md


def test_report_is_self_contained(run_dir):
    html = (run_dir / "report.html").read_text()
    assert "<style>" in html and html.count("data:image/png;base64,") >= 3
    assert not re.search(r"""(src|href)=["']https?://""", html)


def test_rerender_from_results_only(run_dir):
    (run_dir / "report.html").unlink()
    write_report(run_dir)
    assert (run_dir / "report.html").stat().st_size > 10_000


def test_pareto_front_keeps_only_undominated_points():
    pts = [(1.0, 90.0), (2.0, 95.0), (3.0, 94.0), (0.5, 80.0), (4.0, 99.0)]
    assert pareto_front(pts) == [3, 0, 1, 4]


@pytest.mark.skipif(CHROMIUM is None, reason="Debian chromium not installed (.ci/run installs it)")
def test_report_renders_in_headless_chromium(run_dir, tmp_path):
    page = tmp_path / "probe.html"
    page.write_text((run_dir / "report.html").read_text().replace("</body>", PROBE + "</body>"))
    dom = subprocess.run(
        [
            CHROMIUM,
            *FLAGS,
            f"--user-data-dir={tmp_path / 'profile'}",
            "--virtual-time-budget=5000",
            "--dump-dom",
            page.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    m = re.search(r"data-probe=\"([^\"]*)\"", dom.stdout)
    assert m, dom.stderr[-2000:]
    probe = json.loads(m.group(1).replace("&quot;", '"'))
    assert probe["images"] >= 3 and probe["decoded"] == probe["images"]
    assert probe["errors"] == [] and probe["external"] == []
    shot = tmp_path / "report.png"
    subprocess.run(
        [
            CHROMIUM,
            *FLAGS,
            f"--user-data-dir={tmp_path / 'profile2'}",
            f"--screenshot={shot}",
            "--window-size=1200,1600",
            (run_dir / "report.html").as_uri(),
        ],
        capture_output=True,
        timeout=120,
    )
    assert shot.exists() and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000
