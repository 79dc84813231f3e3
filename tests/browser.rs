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
    let o = Command::new(env!("CARGO_BIN_EXE_kfsim"))
        .args(["run", "scenarios/quickstart.toml", "-q", "--out"])
        .arg(&run)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));

    // the detector must see a broken page, or its silence below means nothing
    let broken = dir.join("broken.html");
    std::fs::write(&broken, "<html><body><script>console.error('boom')</script></body></html>").unwrap();
    let (_, problems) = load(&browser, &broken, &dir.join("broken.png"), &dir.join("profile-a"));
    assert!(!problems.is_empty(), "a console error on a page must be noticed");

    let (png, problems) =
        load(&browser, &run.join("report.html"), &dir.join("report.png"), &dir.join("profile-b"));
    assert!(problems.is_empty(), "report.html logged: {problems:#?}");
    assert!(png.starts_with(b"\x89PNG"), "no screenshot was taken");
    assert!(png.len() > 50_000, "the screenshot is nearly empty ({} bytes)", png.len());
}
