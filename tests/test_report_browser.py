"""The HTML report in a real browser: headless Chromium (the Debian package `chromium`, which .ci/run
installs when it is missing) renders it 1280 px wide; every image loads, nothing overflows sideways, the
before/after slider moves, and the page logs no errors. A screenshot is taken as the user would see it."""
import json
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
from conftest import SET5
from PIL import Image

PROBE_HEAD = """<script>
window.__errors = [];
window.addEventListener('error', function (e) { window.__errors.push(String(e.message || (e.target && e.target.src))); }, true);
(function () { var original = console.error;
  console.error = function () { window.__errors.push(Array.prototype.join.call(arguments, ' ')); original.apply(console, arguments); };
})();
</script>"""

PROBE_BODY = """<script>
window.addEventListener('load', function () {
  var root = document.documentElement, out = {};
  out.images = Array.prototype.map.call(document.images, function (im) { return [im.alt, im.naturalWidth, im.complete]; });
  out.scrollWidth = root.scrollWidth; out.clientWidth = root.clientWidth;
  var range = document.querySelector('.compare input'), top = document.querySelector('.compare .after');
  out.sliderBefore = getComputedStyle(top).clipPath;
  range.value = 20; range.dispatchEvent(new Event('input'));
  out.sliderAfter = getComputedStyle(top).clipPath;
  out.errors = window.__errors;
  var pre = document.createElement('pre'); pre.id = 'probe'; pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
});
</script>"""

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--hide-scrollbars",
         "--no-first-run", "--mute-audio", "--virtual-time-budget=10000"]


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    pytest.fail("headless Chromium is needed for this test: apt-get install chromium (.ci/run installs it)")


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    d = tmp_path_factory.mktemp("report")
    src = d / "bird.png"
    Image.open(SET5 / "LR_x2" / "bird_LRBI_x2.png").save(src)
    r = subprocess.run([sys.executable, "-m", "accel.upscale", str(src), "-o", str(d / "bird_x2.png"), "--explain",
                        "--model", "compact", "--quiet"], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    return d / "bird_x2.html"


def test_report_renders_in_a_browser(report, tmp_path):
    page = report.read_text(encoding="utf-8")
    probe = tmp_path / "probe.html"
    probe.write_text(page.replace("<head>", "<head>" + PROBE_HEAD, 1).replace("</body>", PROBE_BODY + "</body>", 1),
                     encoding="utf-8")
    r = subprocess.run([chromium(), *FLAGS, "--window-size=1280,1000", "--dump-dom", probe.as_uri()],
                       capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, r.stderr[-2000:]
    found = re.search(r'<pre id="probe">(.*?)</pre>', r.stdout, re.S)
    assert found, r.stdout[-2000:]
    out = json.loads(found[1].replace("&quot;", '"').replace("&amp;", "&").replace("&lt;", "<").replace("&gt;", ">"))
    assert len(out["images"]) >= 6, out["images"]                       # 4 figures + the slider's two crops
    assert all(width > 0 and complete for _, width, complete in out["images"]), out["images"]
    assert out["clientWidth"] == 1280 and out["scrollWidth"] <= out["clientWidth"], out
    assert out["sliderBefore"] != out["sliderAfter"] and "20%" in out["sliderAfter"], out
    assert out["errors"] == [], out["errors"]


def test_screenshot_at_1280(report, tmp_path):
    shot = tmp_path / "report.png"
    r = subprocess.run([chromium(), *FLAGS, "--window-size=1280,2400", f"--screenshot={shot}", report.as_uri()],
                       capture_output=True, text=True, timeout=180)
    assert r.returncode == 0 and shot.is_file(), r.stderr[-2000:]
    with Image.open(shot) as im:
        assert im.size == (1280, 2400)
        assert len(np.unique(np.asarray(im.convert("L")))) > 20   # a rendered page, not a blank one
