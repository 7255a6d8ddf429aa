"""`make site`: the course as a website, built from the executed notebooks by Sphinx + myst-nb.

The fast tests check the staging of tools/make_site.py on small notebooks (links, launch
links, blanks, answers, machine paths). The slow ones build the site from the course
executed on the ci profile (the notebook tests' copies when they ran in this session, else
executed here; ``AGKIT_SITE_COURSE=folder`` uses notebooks executed beforehand with
``python -m agkit.course.run_all --profile ci --all --out folder``), once for instructors
(``--answers``) and once for students over it, and open a notebook page in Debian's headless
Chromium. Set AGKIT_UPDATE_SCREENSHOT=1 to also write docs/site-notebook.png.
"""

import base64
import html
import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import faults
import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

from agkit.course import run_all as run_course
from agkit.course import stamp, student

ROOT = Path(__file__).resolve().parents[1]
TOOL = ROOT / "tools" / "make_site.py"
spec = importlib.util.spec_from_file_location("make_site", TOOL)
make_site = importlib.util.module_from_spec(spec)
spec.loader.exec_module(make_site)

CHROMIUM = Path("/usr/bin/chromium")
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
PAGE = "03_guided_training"  # exercises, checks, figures and a questionnaire
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


def _tagged(source, *tags, cell=new_code_cell):
    return cell(source, metadata={"tags": list(tags)})


def _executed(name="03_guided_training.ipynb", runs="/tmp/somewhere/ci-runs"):
    """A small notebook as papermill leaves it: injected parameters, outputs, a widget."""
    badges = (
        f"{stamp.badge(f'notebooks/{name}')} **solution version** · "
        f"{stamp.badge(f'notebooks/student/{name}')} **student version** (exercises blank)"
    )
    widget = new_output(
        "display_data", data={WIDGET_VIEW: {"model_id": "x"}, "text/plain": "MaskAnnotator()"}
    )
    cells = [
        new_markdown_cell(f"# 3 · A lesson\n\n{badges}\n\nIn this notebook you will learn."),
        _tagged(f'# Parameters\nprofile = "ci"\nruns_dir = "{runs}"\n', "injected-parameters"),
        _tagged(
            "def f(x):\n    # BEGIN SOLUTION\n    return x + 1\n    # END SOLUTION", "exercise"
        ),
        _tagged("exercises.check_f(f)", "check"),
        new_markdown_cell("1. Why?", metadata={"tags": ["questionnaire"]}),
        new_markdown_cell("<details><summary>Answers</summary>\n\n1. Because.\n</details>"),
        new_code_cell("save()", outputs=[new_output("stream", text=f"saved {runs}/results/t.csv")]),
        new_code_cell("annotator", outputs=[widget]),
        new_markdown_cell("See [the data](../data/README.md) and [the method](../docs/method.md)."),
    ]
    cells[3].outputs = [new_output("stream", text="✓ f matches the reference\n")]
    cells[5].metadata["tags"] = ["answers"]
    notebook = new_notebook(cells=cells)
    notebook.metadata["papermill"] = {"parameters": {"profile": "ci", "runs_dir": runs}}
    notebook.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": {}}
    return notebook


def _site_page(answers):
    pages = {"README.md", "notebooks/03_guided_training.ipynb", "docs/method.md"}
    return make_site.site_notebook(_executed(), "03_guided_training.ipynb", answers, pages, set())


# --------------------------------------------------------------------------------------
# staging (fast)


def test_links_point_at_the_site_or_at_github():
    pages, assets = {"README.md", "docs/method.md", "notebooks/01_a.ipynb"}, set()
    blob = f"https://github.com/{stamp.REPOSITORY}/blob/{stamp.REF}"
    tree = f"https://github.com/{stamp.REPOSITORY}/tree/{stamp.REF}"
    text = (
        "[m](docs/method.md) ![s](docs/summary.png) [d](data/README.md#masks) [p](agkit) "
        '[w](https://anywidget.dev) [h](#two-commands) [n](notebooks/01_a.ipynb "title")'
    )
    assert make_site.rewrite_links(text, "README.md", pages, assets) == (
        f"[m](docs/method.md) ![s](docs/summary.png) [d]({blob}/data/README.md#masks) "
        f"[p]({tree}/agkit) [w](https://anywidget.dev) [h](#two-commands) "
        '[n](notebooks/01_a.ipynb "title")'
    )
    assert assets == {"docs/summary.png"}
    # from a notebook, one folder down, the same files
    text = "[m](../docs/method.md) [d](../data/README.md) [x](../no/such/file.md)"
    assert make_site.rewrite_links(text, "notebooks/01_a.ipynb", pages, assets) == (
        f"[m](../docs/method.md) [d]({blob}/data/README.md) [x](../no/such/file.md)"
    )


def test_student_page_has_blanks_launch_links_and_no_answers():
    page = _site_page(answers=False)
    sources = [cell.source for cell in page.cells]
    first = sources[0]
    name = "03_guided_training.ipynb"
    assert first.startswith('# 3 · A lesson\n\n<div class="agkit-launch">')
    for url in (
        stamp.colab_url(f"notebooks/{name}"),
        stamp.binder_url(f"notebooks/{name}"),
        stamp.colab_url(f"notebooks/student/{name}"),
        stamp.binder_url(f"notebooks/student/{name}"),
    ):
        assert f'href="{html.escape(url)}"' in first
    assert f'href="student/{name}"' in first and "<code>ci</code> profile" in first
    assert "colab-badge.svg" not in first and first.endswith("In this notebook you will learn.\n")
    assert not any("# Parameters" in s for s in sources), "papermill's injected cell stays out"
    exercise = next(c for c in page.cells if "exercise" in c.metadata.get("tags", []))
    assert exercise.source == "def f(x):\n    ...  # your code here"
    check = next(c for c in page.cells if "check" in c.metadata.get("tags", []))
    assert check.outputs == [], "a ✓ from the solution would sit under the blank"
    assert not any("Because." in s for s in sources), "the questionnaire's answers"
    assert "1. Why?" in sources
    saved = next(c for c in page.cells if c.source == "save()")
    assert saved.outputs[0].text == "saved runs/results/t.csv"
    shown = next(c for c in page.cells if c.source == "annotator").outputs[0].data
    assert WIDGET_VIEW not in shown
    png = base64.b64encode((ROOT / "docs" / "widget.png").read_bytes()).decode()
    assert f'src="data:image/png;base64,{png}"' in shown["text/html"]
    assert "widgets" not in page.metadata
    blob = f"https://github.com/{stamp.REPOSITORY}/blob/{stamp.REF}/data/README.md"
    assert sources[-1] == f"See [the data]({blob}) and [the method](../docs/method.md)."


def test_instructor_page_keeps_solutions_checks_and_answers():
    page = _site_page(answers=True)
    exercise = next(c for c in page.cells if "exercise" in c.metadata.get("tags", []))
    assert "return x + 1" in exercise.source and "solution" in exercise.metadata["tags"]
    check = next(c for c in page.cells if "check" in c.metadata.get("tags", []))
    assert check.outputs[0].text.startswith("✓")
    assert any("Because." in c.source for c in page.cells)


def test_build_keeps_a_folder_it_did_not_make(tmp_path):
    executed = tmp_path / "course"
    executed.mkdir()
    nbformat.write(_executed(), executed / "03_guided_training.ipynb")
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="did not write; pass another output folder"):
        make_site.build(executed, out)
    assert (out / "notes.txt").read_text() == "keep me"


def test_build_without_executed_notebooks_says_to_run_the_course(tmp_path):
    with pytest.raises(FileNotFoundError, match="run `make course`"):
        make_site.build(tmp_path, tmp_path / "site")


# --------------------------------------------------------------------------------------
# the built site in headless Chromium (slow)


def _page_text(path: Path) -> str:
    """A page's HTML as text: tags removed, entities decoded (Pygments splits code in spans)."""
    return html.unescape(re.sub(r"<[^>]+>", "", path.read_text(encoding="utf-8")))


def _solution_lines(name: str) -> list[str]:
    cells = nbformat.read(ROOT / "notebooks" / name, as_version=4).cells
    exercises = [c for c in cells if "exercise" in c.metadata.get("tags", [])]
    return [line for c in exercises for line in student.solution_lines(c.source)]


@pytest.fixture(scope="module")
def executed(course_dirs):
    if os.environ.get("AGKIT_SITE_COURSE"):
        return Path(os.environ["AGKIT_SITE_COURSE"]).resolve()
    folder, runs = course_dirs
    folder.mkdir(parents=True, exist_ok=True)
    for path in NOTEBOOKS:
        if not (folder / path.name).exists():  # the notebook tests did not run it
            run_course.execute(path, folder, run_course.course_parameters("ci", runs, path))
    return folder


@pytest.fixture(scope="module")
def instructor_site(executed, tmp_path_factory):
    out = tmp_path_factory.mktemp("site") / "instructor"
    result = subprocess.run(
        [sys.executable, str(TOOL), str(executed), str(out), "--answers"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return out


@pytest.fixture(scope="module")
def student_site(instructor_site, executed):
    # built over a copy of the instructor's site: the answer key must not survive the rebuild
    out = instructor_site.parent / "student"
    shutil.copytree(instructor_site, out)
    make_site.build(executed, out)
    return out


@pytest.mark.slow
def test_instructor_site_has_the_answer_key_and_the_solutions(instructor_site, executed):
    key = instructor_site / "docs" / "answers.html"
    assert key.is_file() and "Questionnaire" in _page_text(key)
    assert 'href="docs/answers.html"' in (instructor_site / "index.html").read_text()
    text = _page_text(instructor_site / "notebooks" / f"{PAGE}.html")
    missing = [line for line in _solution_lines(f"{PAGE}.ipynb") if line not in text]
    assert not missing, f"solution lines not on the page: {missing[:3]}"
    assert "Answers" in text and "✓" in text


@pytest.mark.slow
def test_student_site_leaves_the_answers_out(student_site, executed):
    assert not (student_site / "docs" / "answers.html").exists()
    assert "answers.html" not in (student_site / "index.html").read_text()
    for path in sorted(executed.glob("[0-9][0-9]_*.ipynb")):
        text = _page_text(student_site / "notebooks" / f"{path.stem}.html")
        shown = [line for line in _solution_lines(path.name) if line in text]
        assert not shown, f"{path.stem}: solution lines on the student site: {shown[:3]}"
        assert "<summary>Answers" not in text


@pytest.mark.slow
@pytest.mark.parametrize("name", [p.name for p in NOTEBOOKS])
def test_every_notebook_page_has_its_launch_links(student_site, executed, name):
    if not (executed / name).exists():
        pytest.fail(f"{name} was not executed into {executed}", pytrace=False)
    page = (student_site / "notebooks" / name.replace(".ipynb", ".html")).read_text()
    solution, blank = f"notebooks/{name}", f"notebooks/student/{name}"
    expected = [stamp.colab_url(solution), stamp.binder_url(solution)]
    if (ROOT / blank).is_file():
        expected += [stamp.colab_url(blank), stamp.binder_url(blank)]
        copy = student_site / "notebooks" / "student" / name
        assert copy.read_bytes() == (ROOT / blank).read_bytes(), "the download link's file"
        assert f'href="student/{name}"' in page
    for url in expected:
        assert f'href="{html.escape(url)}"' in page, f"{name}: no link to {url}"


def _require_browser():
    faults.require_browser("the site's browser test")


@pytest.mark.slow
@pytest.mark.browser
def test_notebook_page_renders_in_chromium(student_site):
    _require_browser()
    from playwright.sync_api import sync_playwright

    name = f"{PAGE}.ipynb"
    path = student_site / "notebooks" / f"{PAGE}.html"
    exercises = [
        c
        for c in nbformat.read(ROOT / "notebooks" / name, as_version=4).cells
        if "exercise" in c.metadata.get("tags", [])
    ]
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            errors = []
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.goto(path.as_uri())
            page.wait_for_load_state("load")
            figures = page.evaluate(
                """() => [...document.querySelectorAll('.cell_output img')].map(
                    i => [i.complete, i.naturalWidth, i.naturalHeight])"""
            )
            assert figures, "no figure on the page"
            assert all(done and w > 0 and h > 0 for done, w, h in figures), figures
            page.locator("mjx-container").first.wait_for(timeout=30_000)  # MathJax, offline
            cells = page.locator("div.cell.tag_exercise")
            assert cells.count() == len(exercises)
            for i in range(len(exercises)):
                assert cells.nth(i).is_visible()
                assert student.BLANK in cells.nth(i).inner_text()
            assert page.locator("div.cell.tag_check").count() == len(exercises)
            assert page.get_by_text("Exercise 1 ·").first.is_visible()
            for url in (
                stamp.colab_url(f"notebooks/{name}"),
                stamp.binder_url(f"notebooks/{name}"),
                stamp.colab_url(f"notebooks/student/{name}"),
            ):
                assert page.locator(f'a[href="{url}"]').is_visible(), url
            download = page.locator(f'a[href="student/{name}"]')
            assert download.is_visible()
            target = path.parent / download.get_attribute("href")
            assert target.read_bytes() == (ROOT / "notebooks" / "student" / name).read_bytes()
            assert not errors, errors
            if os.environ.get("AGKIT_UPDATE_SCREENSHOT") == "1":
                page.goto((student_site / "notebooks" / "01_baseline_training.html").as_uri())
                page.locator("mjx-container").first.wait_for(timeout=30_000)
                # from the title and its launch links down to the page's first figure
                bottom = page.evaluate(
                    """() => document.querySelector('.cell_output img')
                        .getBoundingClientRect().bottom + window.scrollY + 24"""
                )
                page.screenshot(
                    path=str(ROOT / "docs" / "site-notebook.png"),
                    full_page=True,
                    clip={"x": 0, "y": 0, "width": 1280, "height": bottom},
                )
        finally:
            browser.close()
