"""``run --report``: report.html and its files; opened in headless Chromium."""

import html
import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

import graphsurgery as gs
from graphsurgery.cli import main
from graphsurgery.demo import build_demo_graph

from .graphs import F32

needs_dot = pytest.mark.skipif(shutil.which("dot") is None, reason="graphviz is not installed")


def _links(page: str) -> list[str]:
    return [html.unescape(u) for u in re.findall(r'(?:href|src)="([^"#]+)"', page)]


@needs_dot
def test_report_on_the_demo_graph_links_existing_files(tmp_path, capsys):
    model = gs.save(build_demo_graph(), tmp_path / "demo.pb")
    out = tmp_path / "out"
    code = main(["run", str(model), "-p", "generic", "-o", str(out), "--target", "none",
                 "--report", "--inputs", "x", "--outputs", "y"])
    assert code == 0, capsys.readouterr().err
    page = (out / "report.html").read_text()
    links = _links(page)
    assert links, "no links in report.html"
    for link in links:
        assert not link.startswith(("http:", "https:", "//")), link
        assert (out / link).is_file(), link
    summary = json.loads((out / "summary.json").read_text())
    assert summary["report"] == "report.html"
    changed = [i + 1 for i, p in enumerate(summary["passes"]) if p["changed"]]
    for i, p in enumerate(summary["passes"], 1):
        stem = f"report/{i:02d}_{p['pass_id'].replace('::', '__')}"
        assert (f"{stem}.svg" in links) == (i in changed), stem
    svg = (out / "report" / "01_core__strip_training.svg").read_text()
    assert 'id="n:lod/Assign"' in svg and 'class="node removed"' in svg
    assert "00_overall.svg" in page and "Op histogram" in page
    prov = json.loads((out / "report" / "provenance.json").read_text())
    assert prov["conv/mul"] == {"pass": "core::fold_constants", "rule": None,
                                "action": "modified"}


def _image_model(tmp_path: Path) -> Path:
    """x [1,16,16,3] -> Identity -> Tanh -> y: an image output for the thumbnails."""
    g = gs.Graph([], inputs=[], outputs=[])
    rw = gs.Rewriter(g, "test::build")
    x = rw.placeholder("x", F32, [1, 16, 16, 3])
    i = rw.add_node("Identity", [x], {"T": F32}, name="net/read")
    k = rw.const(np.float32(0.5), name="net/k")
    m = rw.add_node("Mul", [i, k], {"T": F32}, name="net/scale")
    y = rw.add_node("Tanh", [m], {"T": F32}, name="y")
    rw.set_graph_inputs([x])
    rw.set_outputs([y])
    return gs.save(g, tmp_path / "img.pb")


@pytest.fixture(scope="module")
def image_report(tmp_path_factory):
    if shutil.which("dot") is None:
        pytest.skip("graphviz is not installed")
    tmp = tmp_path_factory.mktemp("report")
    out = tmp / "out"
    code = main(["run", str(_image_model(tmp)), "-p", "core::remove_identity,core::dce",
                 "-o", str(out), "--target", "none", "--verify", "--report"])
    assert code == 0
    return out


def test_report_shows_output_images_and_errors(image_report):
    page = (image_report / "report.html").read_text()
    pngs = [u for u in _links(page) if u.endswith(".png")]
    assert sorted(Path(u).name for u in pngs) == [
        "out0_error.png", "out0_graphdef.png", "out0_reference.png"]
    import tensorflow as tf
    ref = tf.io.decode_png((image_report / pngs[0]).read_bytes()).numpy()
    assert ref.shape == (64, 64, 3) and ref.std() > 5  # 16 px enlarged, not blank
    assert "Fidelity" in page and "graphdef:y:0" in page
    # the per-pass error column: the identity removal changes nothing numerically
    row = re.search(r"core::remove_identity</code>.*?</tr>", page, re.S).group(0)
    assert re.search(r'<td class="num">0</td>', row), row


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(_chromium() is None, reason="chromium is not installed (make system-deps)")
def test_report_renders_in_headless_chromium(image_report, tmp_path):
    url = (image_report / "report.html").resolve().as_uri()
    base = [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync"]
    shot = tmp_path / "shot.png"
    subprocess.run(base + [f"--user-data-dir={tmp_path / 'profile1'}", f"--screenshot={shot}",
                           "--window-size=1280,2000", url],
                   check=True, capture_output=True, timeout=120)
    assert shot.is_file() and shot.stat().st_size > 20_000
    import tensorflow as tf
    pixels = tf.io.decode_png(shot.read_bytes(), channels=3).numpy()
    assert pixels.shape[:2] == (2000, 1280)
    assert pixels.std() > 10  # not a blank page
    # The verdicts come first: the green "clean / within tolerance" cards (#f1f8e9, used by
    # nothing else) sit in the top 300 px, each at least 200 px wide.
    verdict = np.all(np.abs(pixels.astype(int) - (241, 248, 233)) <= 2, axis=-1)
    rows = np.nonzero(verdict.sum(axis=1) >= 200)[0]
    assert rows.size and rows[0] < 300, rows[:5]

    dom = subprocess.run(base + [f"--user-data-dir={tmp_path / 'profile2'}",
                                 "--virtual-time-budget=10000", "--dump-dom", url],
                         check=True, capture_output=True, timeout=120, text=True).stdout
    loaded = re.search(r'data-images-loaded="(\d+)/(\d+)"', dom)
    assert loaded, "the page's load script did not run"
    ok, total = map(int, loaded.groups())
    assert total >= 5 and ok == total  # 3 PNG thumbnails, the overall and per-pass diffs
    assert 'data-loaded="no"' not in dom


_FAILING_PLUGIN = '''
from graphsurgery import register_pass


@register_pass("reporttest::boom")
def boom(graph, rw):
    """Fail on purpose, after a change.

    Before::

        x -> y

    After::

        (raises)
    """
    rw.add_node("NoOp", [], {}, name="left_behind")
    raise RuntimeError("boom")
'''


@needs_dot
def test_report_lists_a_failed_pass_in_order(tmp_path, capsys):
    plugin = tmp_path / "boom.py"
    plugin.write_text(_FAILING_PLUGIN)
    model = gs.save(build_demo_graph(), tmp_path / "demo.pb")
    out = tmp_path / "out"
    code = main(["run", str(model), "-p", "core::strip_training,reporttest::boom,core::dce",
                 "--plugin", str(plugin), "-o", str(out), "--target", "none", "--report",
                 "--keep-going", "--inputs", "x", "--outputs", "y"])
    assert code == 3, capsys.readouterr().err
    page = (out / "report.html").read_text()
    rows = re.findall(r"<tr><td class=\"num\">(\d+)</td><td><code>([^<]+)</code>(.*?)</tr>",
                      page, re.S)
    assert [(n, p) for n, p, _ in rows] == [
        ("1", "core::strip_training"), ("2", "reporttest::boom"), ("3", "core::dce")]
    assert "FAILED" in rows[1][2] and "boom" in rows[1][2]
    assert "report/01_core__strip_training.svg" in rows[0][2]
    assert "report/03_core__dce.svg" in rows[2][2]
    assert not (out / "report" / "02_reporttest__boom.svg").exists()


def test_report_without_graphviz_keeps_the_dot_text(tmp_path, capsys, monkeypatch):
    import graphsurgery.render.report as report

    real_which = shutil.which
    monkeypatch.setattr(report.shutil, "which",
                        lambda name, *a, **k: None if name == "dot" else real_which(name))
    model = gs.save(build_demo_graph(), tmp_path / "demo.pb")
    out = tmp_path / "out"
    code = main(["run", str(model), "-p", "core::strip_training", "-o", str(out),
                 "--target", "none", "--report", "--inputs", "x", "--outputs", "y"])
    assert code == 0, capsys.readouterr().err
    assert "digraph" in (out / "report" / "01_core__strip_training.dot").read_text()
    assert "not installed" in (out / "report" / "01_core__strip_training.svg").read_text()
    for link in _links((out / "report.html").read_text()):
        assert (out / link).is_file(), link


def test_report_puts_verdicts_first_and_collapses_passes_that_changed_nothing(image_report):
    page = (image_report / "report.html").read_text()
    verdicts = page.index('id="verdicts"')
    assert verdicts < page.index('id="pipeline"') < page.index('id="fidelity"')
    assert verdicts < page.index('id="images"')
    head = page[verdicts:page.index("</div></div>", verdicts)]
    assert "fidelity: within tolerance" in head and "max abs error 0, identical" in head
    assert "no target (--target none)" in head
    toc = re.search(r'<nav class="toc">(.*?)</nav>', page).group(1)
    anchors = re.findall(r'href="#([^"]+)"', toc)
    assert anchors[:2] == ["images", "pipeline"] and "audit" not in anchors
    assert all(f'id="{a}"' in page for a in anchors)
    # core::dce changed nothing: hidden behind the toggle; each pass says what it is for
    row = re.search(r'<tr class="nochange">.*?</tr>', page, re.S).group(0)
    assert "core::dce" in row and "Remove every node the declared outputs do not need." in row
    assert 'id="show-unchanged"' in page and "show the 1 passes that changed nothing" in page


def test_changed_nodes_show_old_and_new_values(image_report):
    from graphsurgery.ir.attrs import Shape
    from graphsurgery.render.report import _attr_changes

    g = gs.Graph([], inputs=[], outputs=[])
    rw = gs.Rewriter(g, "test::build")
    x = rw.placeholder("x", F32, [-1, 4])
    rw.add_node("Relu", [x], {"T": F32}, name="y")
    before = g.copy()
    gs.Rewriter(g, "test::edit").set_attr("x", "shape", Shape((1, 4)))
    assert _attr_changes(before.node_def("x"), g.node_def("x")) == "shape (-1, 4) \u2192 (1, 4)"
    page = (image_report / "report" / "01_core__remove_identity.html").read_text()
    assert "input 0 net/read \u2192 x" in html.unescape(page)


@pytest.mark.skipif(_chromium() is None, reason="chromium is not installed (make system-deps)")
def test_diff_pages_search_nodes_by_name_offline(image_report, tmp_path):
    """A diff page pans, zooms and finds nodes by name with its own script (no network)."""
    page = image_report / "report" / "00_overall.html"
    text = page.read_text()
    assert 'id="find"' in text and "http" not in re.sub(r'xmlns[^"]*"[^"]*"', "", text)
    base = [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--virtual-time-budget=5000", "--dump-dom"]
    found = {}
    for i, name in enumerate(["net/scale", "no/such/node"]):
        dom = subprocess.run(base + [f"--user-data-dir={tmp_path / f'p{i}'}",
                                     f"{page.resolve().as_uri()}?find={name}"],
                             check=True, capture_output=True, timeout=120, text=True).stdout
        match = re.search(r'data-found="(\d+)"', dom)
        assert match, "the page's navigation script did not run"
        found[name] = int(match.group(1))
        if found[name]:
            assert re.search(r'<g id="n:net/scale" class="[^"]*found', dom)
    assert found == {"net/scale": 1, "no/such/node": 0}
