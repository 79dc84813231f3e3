//! Stamps the binary with `git describe`, so a report says which commit
//! produced it. Outside a git checkout the package version alone is used.

fn main() {
    // `describe --dirty` refreshes the index and writes it back when its
    // stat data changed, and the index is watched below: the next build
    // then ran this script and relinked everything again
    let describe = std::process::Command::new("git")
        .env("GIT_OPTIONAL_LOCKS", "0")
        .args(["describe", "--always", "--dirty", "--tags"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .filter(|s| !s.is_empty());
    let version = match describe {
        Some(d) => format!("{} ({d})", env!("CARGO_PKG_VERSION")),
        None => env!("CARGO_PKG_VERSION").to_owned(),
    };
    println!("cargo:rustc-env=KFSIM_VERSION={version}");
    // In a linked worktree `.git` is a file and HEAD/index live elsewhere; a
    // path that does not exist would make cargo rebuild the crate every time.
    for name in ["HEAD", "index"] {
        let path = std::process::Command::new("git")
            .args(["rev-parse", "--git-path", name])
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .filter(|p| std::path::Path::new(p).exists());
        if let Some(path) = path {
            println!("cargo:rerun-if-changed={path}");
        }
    }
    println!("cargo:rerun-if-changed=build.rs");
}
