"""The static leaderboard page in a real headless browser: load it from a file, click a
column header, and check that the rows were re-ordered."""

import os
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from numbench.cli import main
from numbench.results import write_json_atomic
from test_leaderboard import variant

pytestmark = pytest.mark.integration
CHROMIUM, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")
REQUIRED = os.environ.get("NUMBENCH_REQUIRE_BROWSER") == "1"  # set by .ci/run


def _browser():
    if not (CHROMIUM and DRIVER):
        if REQUIRED:
            pytest.fail("chromium and chromedriver are required (apt-get install chromium chromium-driver)")
        pytest.skip("no chromium/chromedriver on this machine")
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1400,1000"):
        opts.add_argument(arg)
    return webdriver.Chrome(service=Service(DRIVER), options=opts)


def test_page_sorts_when_a_header_is_clicked(tmp_path, tiny_result, monkeypatch):
    pytest.importorskip("matplotlib")
    root = tmp_path / "submissions"
    for name, score in (("m_low", 0.2), ("m_high", 0.9), ("m_mid", 0.5)):
        write_json_atomic(root / name / "result.json", variant(tiny_result, symbol=score, iid=1.0))
    page = tmp_path / "board.html"
    res = CliRunner().invoke(main, ["leaderboard", "--submissions", str(root),
                                    "--out", str(tmp_path / "board.md"), "--html", str(page)])
    assert res.exit_code == 0, res.output
    html = page.read_text()
    assert "data:image/png;base64," in html and "<script>" in html and "src='http" not in html

    from selenium.webdriver.common.by import By

    driver = _browser()
    try:
        driver.get(Path(page).as_uri())
        table = driver.find_elements(By.CSS_SELECTOR, "table.sortable")[0]
        column = lambda name: [r.find_elements(By.TAG_NAME, "td")[headers.index(name)].text
                               for r in table.find_elements(By.CSS_SELECTOR, "tbody tr")]
        headers = [th.text.strip() for th in table.find_elements(By.CSS_SELECTOR, "thead th")]
        assert column("model") == ["m_high", "m_mid", "m_low"]  # ranked
        table.find_elements(By.CSS_SELECTOR, "thead th")[headers.index("symbol score")].click()
        headers = [th.text.replace("▲", "").replace("▼", "").strip()
                   for th in table.find_elements(By.CSS_SELECTOR, "thead th")]
        assert column("model") == ["m_low", "m_mid", "m_high"]  # ascending after a click
        assert column("symbol score") == ["0.200", "0.500", "0.900"]
        driver.save_screenshot(str(tmp_path / "board.png"))
        assert (tmp_path / "board.png").stat().st_size > 1000
    finally:
        driver.quit()
