"""``podcap analyze --format html``: the page a person opens, checked in a real headless
Chromium (Debian's package, started here): it loads from disk alone, shows the key numbers,
puts the problems first and draws the timeline."""

from __future__ import annotations

import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pandas as pd
import pytest

from podcap.analysis.run import analyze
from podcap.render.html import html_report
from testbed.helpers import podcap

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "sample_pcaps"
FIRST_LOOK = [
    SAMPLES / n for n in ("01-http-mytest.pcap", "06-syn-dropped.pcap", "07-conn-refused.pcap")
]
SNAT_SET = [SAMPLES / f"10-snat-{point}.pcap" for point in ("pod", "node", "peer")]
MASQ_CONFIG = ROOT / "notebooks" / "ip-masq-agent.yaml"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
CARD = re.compile(r'data-key="([^"]+)"><div class="number">(\d+)</div>')


@pytest.fixture(scope="module", autouse=True)
def chromium_installed():
    # scripts/test.sh installs it; a missing browser is a failure here, never a skip.
    assert shutil.which("chromium"), "Debian's chromium is needed: apt-get install -y chromium"


def podcap_html(tmp_path: Path, *args) -> Path:
    page = tmp_path / "report.html"
    result = podcap("analyze", *args, "--format", "html", "-o", page)
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    return page


def chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    profile = tmp_path / f"chromium-profile-{len(list(tmp_path.glob('chromium-profile-*')))}"
    return subprocess.run(
        ["chromium", *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )


def dump_dom(tmp_path: Path, page: Path) -> str:
    return chromium(tmp_path, "--dump-dom", page.as_uri()).stdout


def screenshot(tmp_path: Path, page: Path):
    import matplotlib.image

    picture = tmp_path / "screenshot.png"
    chromium(tmp_path, f"--screenshot={picture}", "--window-size=1280,1600", page.as_uri())
    return matplotlib.image.imread(picture)


class Resources(HTMLParser):
    """Collects every tag and every attribute that could make the browser fetch something."""

    def __init__(self):
        super().__init__()
        self.tags: list[str] = []
        self.urls: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.urls += [
            value or "" for name, value in attrs if name in {"src", "href", "srcset", "action"}
        ]


def test_page_shows_key_numbers_problems_first_and_timeline_in_chromium(tmp_path):
    page = podcap_html(tmp_path, *FIRST_LOOK)
    expected = analyze(FIRST_LOOK, reports=["summary", "tcp", "http"])
    summary = expected["summary"]

    dom = dump_dom(tmp_path, page)
    cards = {key: int(value) for key, value in CARD.findall(dom)}
    assert cards["packets"] == summary["packets"].sum() == 42
    assert cards["flows"] == summary["flows"].sum() == 5
    assert cards["http_requests"] == len(expected["http"]) == 3
    assert cards["unanswered_connections"] == 1 and cards["refused_connections"] == 1
    # Problems come before the timeline and the tables, with the tcp report's hints.
    order = [dom.index(f'id="{name}"') for name in ("tcp", "timeline", "flows", "http", "snat")]
    assert order == sorted(order)
    problems = dom[order[0] : order[1]]
    for hint in expected["tcp"]["hint"]:
        assert hint.split("(")[0].strip() in problems
    assert "/api/v1/items?id=7" in dom and "/mytest" in dom
    assert re.search(r'<img class="plot"[^>]* src="data:image/png;base64,', dom)

    image = screenshot(tmp_path, page)
    height, width = image.shape[:2]
    assert (height, width) == (1600, 1280)
    ink = (image[..., :3] < 0.6).any(axis=2).mean()
    assert ink > 0.01  # text, tables and the plot are drawn, not a blank page
    # The red of the "bad" cards (#b71c1c numbers on #fdecea) shows on screen.
    red = (image[..., 0] > 0.6) & (image[..., 1] < 0.3) & (image[..., 2] < 0.3)
    assert red.sum() > 50


def test_page_is_self_contained(tmp_path):
    page = podcap_html(tmp_path, *FIRST_LOOK)
    parser = Resources()
    parser.feed(page.read_text())
    assert "script" not in parser.tags and "link" not in parser.tags
    assert parser.urls and all(url.startswith("data:") for url in parser.urls)
    assert "default-src 'none'" in page.read_text()  # the browser itself refuses any fetch


def test_snat_verdicts_and_fix_from_the_configmap(tmp_path):
    page = podcap_html(
        tmp_path, *SNAT_SET, "--masq-config", MASQ_CONFIG, "--pod-cidr", "10.244.0.0/16"
    )
    dom = dump_dom(tmp_path, page)
    cards = {key: int(value) for key, value in CARD.findall(dom)}
    assert cards["snat_snat"] == 3
    snat = dom[dom.index('id="snat"') :]
    assert "172.20.0.11" in snat and "16650" in snat  # the node IP and port the peer saw
    assert "kubectl -n kube-system edit configmap ip-masq-agent-config" in snat


def test_cells_are_escaped():
    hostile = pd.DataFrame({"uri": ["/<script>alert(1)</script>"], "host": ['"><img src=x>']})
    page = html_report({"http": hostile})
    assert "<script>" not in page and "<img src=x>" not in page
    assert "&lt;script&gt;" in page
