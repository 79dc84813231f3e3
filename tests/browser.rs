//! report.html in a real browser: Debian's Chromium, headless, loads the
//! page, takes a screenshot, and reports no console message or failed load.
//! `.ci/run` installs Chromium; where it is missing the test says so and
//! passes, except under CI (`CI` set), where a missing browser is a failure.

use std::path::{Path, PathBuf};
use std::process::Command;

fn chromium() -> Option<PathBuf> {
    let candidates = [std::env::var_os("CHROMIUM").map(PathBuf::from), Some("/usr/bin/chromium".into())];
    candidates.into_iter().flatten().find(|p| p.exists())
}

/// Load `page` headless; returns (screenshot bytes, problems the browser logged).
fn load(browser: &Path, page: &Path, shot: &Path, profile: &Path) -> (Vec<u8>, Vec<String>) {
    let url = format!("file://{}", page.canonicalize().unwrap().display());
    let out = Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--enable-logging=stderr",
            "--v=0",
            "--window-size=1000,4000",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(format!("--screenshot={}", shot.display()))
        .arg(url)
        .output()
        .expect("chromium starts");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let problems = stderr
        .lines()
        .filter(|l| l.contains(":CONSOLE") || l.contains("net::ERR_") || l.contains("Failed to load"))
        .map(str::to_owned)
        .collect();
    (std::fs::read(shot).unwrap_or_default(), problems)
}

/// What the check script found on a page: per figure its size and whether
/// it lies inside the page's width, and anything wider than the page.
const CHECK: &str = r#"<script>
window.addEventListener('load', () => {
  const width = document.documentElement.clientWidth;
  const out = { width, scroll_width: document.documentElement.scrollWidth, figures: [], wide: [] };
  for (const f of document.querySelectorAll('figure')) {
    const svg = f.querySelector('svg');
    const r = svg ? svg.getBoundingClientRect() : { width: 0, height: 0, left: 0, right: 0 };
    out.figures.push({ id: f.id, w: Math.round(r.width), h: Math.round(r.height),
                       inside: r.left >= 0 && r.right <= width + 0.5,
                       marks: svg ? svg.querySelectorAll('path,rect,polyline,circle,line').length : 0 });
  }
  for (const e of document.querySelectorAll('table,figure,p,div,h1,h2')) {
    if (e.scrollWidth > e.clientWidth + 1 || e.getBoundingClientRect().right > width + 0.5) {
      out.wide.push(e.tagName + (e.id ? '#' + e.id : '') + ' ' + e.scrollWidth + '>' + e.clientWidth);
    }
  }
  const pre = document.createElement('pre');
  pre.id = 'kfsim-check';
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
});
</script>"#;

/// The page with the check script, loaded headless; its findings as JSON.
fn measure(browser: &Path, page: &Path, dir: &Path, profile: &Path) -> serde_json::Value {
    let html = std::fs::read_to_string(page).unwrap();
    let probe = dir.join(format!("probe-{}", page.file_name().unwrap().to_string_lossy()));
    std::fs::write(&probe, html.replace("</body>", &format!("{CHECK}</body>"))).unwrap();
    let out = Command::new(browser)
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--window-size=1000,4000"])
        .args(["--disable-background-networking", "--disable-component-update", "--disable-sync"])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg("--dump-dom")
        .arg(format!("file://{}", probe.canonicalize().unwrap().display()))
        .output()
        .expect("chromium starts");
    let dom = String::from_utf8_lossy(&out.stdout);
    let start = dom.find("<pre id=\"kfsim-check\">").map(|i| i + "<pre id=\"kfsim-check\">".len());
    let start = start.unwrap_or_else(|| panic!("{}: the check did not run: {dom}", page.display()));
    let end = start + dom[start..].find("</pre>").unwrap();
    let json = dom[start..end]
        .replace("&quot;", "\"")
        .replace("&gt;", ">")
        .replace("&lt;", "<")
        .replace("&amp;", "&");
    serde_json::from_str(&json).unwrap()
}

fn kfsim(args: &[&str], out: &Path) {
    let o = Command::new(env!("CARGO_BIN_EXE_kfsim")).args(args).arg(out).output().unwrap();
    assert!(
        o.status.success(),
        "{args:?}: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
}

#[test]
fn report_html_renders_in_chromium_without_console_errors() {
    let Some(browser) = chromium() else {
        assert!(std::env::var_os("CI").is_none(), "CI must install chromium (see .ci/run)");
        eprintln!("chromium not found: browser test not run");
        return;
    };
    let dir = std::env::temp_dir().join(format!("kfsim-browser-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let run = dir.join("run");
    kfsim(&["run", "scenarios/quickstart.toml", "-q", "--out"], &run);
    // a bot and a transfer: the flow of sessions and its tables
    let reception = dir.join("reception");
    kfsim(&["run", "tests/data/reception.toml", "-q", "--out"], &reception);
    let other = dir.join("other");
    kfsim(&["run", "scenarios/quickstart.toml", "-q", "--seed", "8", "--out"], &other);
    let compare = dir.join("compare");
    let (r, o) = (run.to_str().unwrap().to_owned(), other.to_str().unwrap().to_owned());
    kfsim(&["compare", &r, &o, "--out"], &compare);
    let sweep = dir.join("sweep");
    kfsim(
        &["sweep", "scenarios/erlang-c.toml", "--set", "duration=6h", "--replications", "3"]
            .into_iter()
            .chain(["--vary", "agents.kf.count=42..50:2", "--out"])
            .collect::<Vec<_>>(),
        &sweep,
    );
    let plan = dir.join("plan");
    kfsim(
        &["plan", "scenarios/erlang-c.toml", "--set", "duration=12h", "--target", "service_level>=0.8"]
            .into_iter()
            .chain(["--vary", "agents.kf.count", "--replications", "3", "--max-replications", "6", "--out"])
            .collect::<Vec<_>>(),
        &plan,
    );

    // the detector must see a broken page, or its silence below means nothing
    let broken = dir.join("broken.html");
    std::fs::write(&broken, "<html><body><script>console.error('boom')</script></body></html>").unwrap();
    let (_, problems) = load(&browser, &broken, &dir.join("broken.png"), &dir.join("profile-a"));
    assert!(!problems.is_empty(), "a console error on a page must be noticed");
    // and the overflow check must see a page wider than the window
    let wide = dir.join("wide.html");
    std::fs::write(
        &wide,
        "<html><body><table style=\"width:3000px\"><tr><td>x</td></tr></table></body></html>",
    )
    .unwrap();
    let m = measure(&browser, &wide, &dir, &dir.join("profile-w"));
    assert!(m["scroll_width"].as_f64().unwrap() > m["width"].as_f64().unwrap(), "{m}");

    let pages = [
        (run.join("report.html"), 10),
        (reception.join("report.html"), 11),
        (compare.join("compare.html"), 3),
        (sweep.join("sweep.html"), 4),
        (plan.join("plan.html"), 1),
    ];
    for (i, (page, min_figures)) in pages.iter().enumerate() {
        let name = page.file_name().unwrap().to_string_lossy().into_owned();
        let (png, problems) =
            load(&browser, page, &dir.join(format!("{name}.png")), &dir.join(format!("profile-{i}")));
        assert!(problems.is_empty(), "{name} logged: {problems:#?}");
        assert!(png.starts_with(b"\x89PNG"), "{name}: no screenshot was taken");
        assert!(png.len() > 50_000, "{name}: the screenshot is nearly empty ({} bytes)", png.len());
        let m = measure(&browser, page, &dir, &dir.join(format!("profile-m{i}")));
        let figures = m["figures"].as_array().unwrap();
        assert!(figures.len() >= *min_figures, "{name}: {} charts: {m}", figures.len());
        for f in figures {
            // visible: drawn at a readable size, inside the page, with marks in it
            assert!(f["w"].as_f64().unwrap() >= 600.0 && f["h"].as_f64().unwrap() >= 250.0, "{name}: {f}");
            assert_eq!(f["inside"], true, "{name}: a chart sticks out of the page: {f}");
            assert!(f["marks"].as_u64().unwrap() > 20, "{name}: an empty chart: {f}");
        }
        assert!(
            m["scroll_width"].as_f64().unwrap() <= m["width"].as_f64().unwrap(),
            "{name} scrolls sideways: {m}"
        );
        assert_eq!(m["wide"], serde_json::json!([]), "{name}: something overflows: {m}");
    }
}
