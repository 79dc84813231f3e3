//! What the tests that run real SDKs and middlewares share: a venv with
//! wechatpy, a folder with node-easywechat, free ports, child processes killed when dropped, a service's
//! `/metrics`.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;

/// The wechatpy release the tests install.
pub const WECHATPY: &str = "wechatpy==2.0.0a26";

/// The venv's python, with wechatpy installed (once per target directory).
pub fn python() -> PathBuf {
    venv("sdk-venv", &[WECHATPY, "cryptography"], "import wechatpy, cryptography")
}

/// LangBot's WeCom KF client (tests/sdk/langbot_kf.py) and what it
/// imports, each pinned and installed without its dependencies: LangBot
/// itself depends on a whole LLM platform (and a pip newer than CI's),
/// none of which its KF client loads.
pub const LANGBOT: &[&str] = &[
    "--no-deps",
    "langbot==4.11.2",
    "langbot-plugin==0.7.16",
    "aiofiles==25.1.0",
    "aiohappyeyeballs==2.7.1",
    "aiohttp==3.14.5",
    "aiosignal==1.4.0",
    "annotated-types==0.8.0",
    "anyio==4.16.0",
    "attrs==26.1.0",
    "blinker==1.9.0",
    "certifi==2026.10.19.post1",
    "click==8.5.1",
    "Flask==3.1.3",
    "frozenlist==1.8.0",
    "h11==0.16.0",
    "h2==4.4.1",
    "hpack==4.2.0",
    "httpcore==1.0.9",
    "httpx==0.29.0",
    "Hypercorn==0.18.0",
    "hyperframe==6.1.0",
    "idna==3.21",
    "itsdangerous==2.2.0",
    "Jinja2==3.1.6",
    "MarkupSafe==3.0.4",
    "multidict==7.2.1",
    "priority==2.0.0",
    "propcache==0.5.4",
    "pycryptodome==4.5.0",
    "pydantic==2.14.4",
    "pydantic_core==2.50.5",
    "Quart==0.22.0",
    "typing-inspection==0.4.5",
    "typing_extensions==4.16.0",
    "Werkzeug==3.1.9",
    "wsproto==1.3.2",
    "yarl==1.25.1",
];

/// The venv's python, with LangBot's KF client importable.
pub fn langbot_python() -> PathBuf {
    venv("langbot-venv", LANGBOT, "from langbot.libs.wecom_customer_service_api.api import WecomCSClient")
}

/// The python of a throwaway venv `name` under the target directory, with
/// `packages` pip-installed (once: while `check` runs, it is kept); they
/// may start with pip's options (`--no-deps`).
pub fn venv(name: &str, packages: &[&str], check: &str) -> PathBuf {
    static ONCE: Mutex<()> = Mutex::new(());
    let _one = ONCE.lock().unwrap_or_else(|e| e.into_inner());
    let venv = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    let py = venv.join("bin").join("python");
    let ready = |py: &Path| Command::new(py).args(["-c", check]).output().is_ok_and(|o| o.status.success());
    if py.exists() && ready(&py) {
        return py;
    }
    let made = Command::new("python3").arg("-m").arg("venv").arg(&venv).output().expect("python3 runs");
    assert!(made.status.success(), "python3 -m venv: {}", String::from_utf8_lossy(&made.stderr));
    let pip = Command::new(&py)
        .args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check"])
        .args(packages)
        .output()
        .expect("pip runs");
    assert!(pip.status.success(), "pip install {packages:?}: {}", String::from_utf8_lossy(&pip.stderr));
    assert!(ready(&py), "`{check}` runs after installing {packages:?}");
    py
}

/// node-easywechat 3.6 installed into a throwaway folder (once per target
/// directory); the folder to run node in. node-socialite is pinned to 1.4:
/// node-easywechat 3.6 asks for ^1.4.1, and 1.5 removed a module it loads.
pub fn easywechat() -> PathBuf {
    static ONCE: Mutex<()> = Mutex::new(());
    let _one = ONCE.lock().unwrap_or_else(|e| e.into_inner());
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("sdk-node");
    if dir.join("node_modules/node-socialite/dist/Core/ProviderInterface.js").exists() {
        return dir;
    }
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("package.json"), r#"{"name": "kfsim-sdk-test", "private": true}"#).unwrap();
    let npm = Command::new("npm")
        .args([
            "install",
            "--silent",
            "--no-audit",
            "--no-fund",
            "node-easywechat@3.6",
            "node-socialite@~1.4.1",
        ])
        .current_dir(&dir)
        .output()
        .expect("npm runs");
    assert!(npm.status.success(), "npm install node-easywechat: {}", String::from_utf8_lossy(&npm.stderr));
    dir
}

/// A free loopback port (bound and released: another process may take it
/// in between, which these tests accept as unlikely).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A child process killed when dropped, with its stdout lines.
pub struct Proc {
    pub child: Child,
    pub lines: std::sync::mpsc::Receiver<String>,
}

impl Proc {
    pub fn start(cmd: &mut Command) -> Proc {
        let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::inherit()).spawn().expect("starts");
        let out = child.stdout.take().unwrap();
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for l in BufReader::new(out).lines().map_while(Result::ok) {
                let _ = tx.send(l);
            }
        });
        Proc { child, lines }
    }

    /// Wait (bounded) for a line containing `what`.
    pub fn wait_for(&self, what: &str) -> String {
        loop {
            let line = self
                .lines
                .recv_timeout(Duration::from_secs(60))
                .unwrap_or_else(|e| panic!("no `{what}`: {e}"));
            if line.contains(what) {
                return line;
            }
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The service's `/metrics`, as `name{labels}` → value.
pub fn metrics(port: u16) -> std::collections::HashMap<String, f64> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(s, "GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    body.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (k, v) = l.rsplit_once(' ')?;
            Some((k.to_owned(), v.parse().ok()?))
        })
        .collect()
}

/// A counter or gauge summed over its label sets.
pub fn total(m: &std::collections::HashMap<String, f64>, name: &str) -> u64 {
    m.iter().filter(|(k, _)| k.split('{').next() == Some(name)).map(|(_, v)| *v as u64).sum()
}
