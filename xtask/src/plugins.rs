//! `cargo xtask plugins`: build the bundled plugins and the sandbox test
//! plugins as WebAssembly components and publish them where the host loads
//! them from.
//!
//! Plugins live in two workspaces of their own (`plugins/`, `tests/plugins/`)
//! so host builds never compile them. Both build into one target directory,
//! `plugins/target`, so wit-bindgen and its proc-macro dependencies are
//! compiled once; the builds run one after the other (they would only fight
//! over that directory's lock and the CPU anyway).
//!
//! `wasm32-wasip2` makes rustc emit a component directly, so no
//! `wasm-tools component new` step is needed.

use std::ffi::OsStr;
use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

/// The Rust target that produces WebAssembly components.
const TARGET: &str = "wasm32-wasip2";

/// Environment that would redirect or break a nested cargo build for
/// another target: host `RUSTFLAGS` (e.g. `-C target-cpu=native`) are wrong
/// for wasm, and a global target dir or default target would put the
/// components where [`publish`] does not look.
const CLEARED_ENV: &[&str] = &[
    "RUSTFLAGS",
    "CARGO_ENCODED_RUSTFLAGS",
    "CARGO_BUILD_RUSTFLAGS",
    "CARGO_TARGET_DIR",
    "CARGO_BUILD_TARGET_DIR",
    "CARGO_BUILD_TARGET",
];

/// One plugins workspace and where its components are published.
struct Workspace {
    /// Directory of the workspace's `Cargo.toml`, relative to the root.
    dir: &'static str,
    /// Crate name prefix; the crate of plugin `x` is `<prefix>x`.
    crate_prefix: &'static str,
    /// Plugin names, by world: crate `<prefix><name>` is published as
    /// `<name>.wasm`. Each group is built by its own cargo invocation,
    /// because cargo unifies features and the SDK's world features must
    /// not meet in one component.
    plugins: &'static [&'static [&'static str]],
    /// Where the components go, relative to the root.
    dist: &'static str,
}

const WORKSPACES: [Workspace; 2] = [
    Workspace {
        dir: "plugins",
        crate_prefix: "tocsin-plugin-",
        plugins: &[
            &["threshold"],
            &["severity-router"],
            &[
                "log",
                "websocket",
                "email",
                "webhook",
                "slack",
                "dingtalk",
                "feishu",
                "wecom",
                "teams",
                "pagerduty",
            ],
        ],
        dist: "plugins/dist",
    },
    Workspace {
        dir: "tests/plugins",
        crate_prefix: "tocsin-test-plugin-",
        plugins: &[&["spin", "hog", "panic", "sockets", "hostile", "flood"]],
        dist: "tests/plugins/dist",
    },
];

/// Build every plugin workspace under `root` (the repository root) for
/// `wasm32-wasip2` in release mode and copy the components to their `dist`
/// directories, printing one line per plugin.
///
/// Copies are atomic (temp file in the same directory, then rename) because
/// a running host watches `plugins/dist` and must never load a half-written
/// file; unchanged components are not rewritten, so a rebuild that changed
/// nothing does not make the host reload anything.
pub fn build_plugins(root: &Path) -> Result<()> {
    add_target(root);
    let target_dir = root.join("plugins").join("target");
    for workspace in &WORKSPACES {
        for group in workspace.plugins {
            build(root, workspace, group, &target_dir)?;
        }
        publish(root, workspace, &target_dir)?;
    }
    Ok(())
}

/// `rustup target add wasm32-wasip2`. Failure is only reported: without
/// rustup the target may still be installed (distro toolchains), and if it
/// is not, the build fails next with rustc's own explanation.
fn add_target(root: &Path) {
    let output = Command::new("rustup")
        .args(["target", "add", TARGET])
        .current_dir(root)
        .output();
    match output {
        Ok(out) if out.status.success() => {}
        Ok(out) => eprintln!(
            "warning: `rustup target add {TARGET}` failed ({}); trying the build anyway\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim_end()
        ),
        Err(e) if e.kind() == ErrorKind::NotFound => {
            eprintln!("warning: rustup not found; assuming the {TARGET} target is installed")
        }
        Err(e) => eprintln!("warning: could not run rustup ({e}); trying the build anyway"),
    }
}

/// The cargo that runs this xtask (same toolchain), or `cargo` from `PATH`.
fn cargo() -> std::ffi::OsString {
    std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into())
}

/// `cargo build --release --target wasm32-wasip2` for one group of a
/// workspace's plugins.
fn build(root: &Path, workspace: &Workspace, group: &[&str], target_dir: &Path) -> Result<()> {
    let manifest = root.join(workspace.dir).join("Cargo.toml");
    let mut command = Command::new(cargo());
    command
        .args(["build", "--release", "--target", TARGET])
        .arg("--manifest-path")
        .arg(&manifest)
        .arg("--target-dir")
        .arg(target_dir)
        .current_dir(root);
    for name in group {
        command
            .arg("-p")
            .arg(format!("{}{name}", workspace.crate_prefix));
    }
    for var in CLEARED_ENV {
        command.env_remove(var);
    }
    let status = command
        .status()
        .with_context(|| format!("could not run {:?}", command.get_program()))?;
    if !status.success() {
        bail!("building {} failed ({status})", manifest.display());
    }
    Ok(())
}

/// Copy the workspace's components from the target dir to its `dist`.
fn publish(root: &Path, workspace: &Workspace, target_dir: &Path) -> Result<()> {
    let out_dir = target_dir.join(TARGET).join("release");
    let dist = root.join(workspace.dist);
    fs::create_dir_all(&dist).with_context(|| format!("creating {}", dist.display()))?;
    for name in workspace.plugins.iter().flat_map(|g| g.iter()) {
        // Cargo names a cdylib after the crate, with `-` turned into `_`.
        let built = out_dir.join(format!(
            "{}.wasm",
            format!("{}{name}", workspace.crate_prefix).replace('-', "_")
        ));
        let bytes = fs::read(&built)
            .with_context(|| format!("reading the component of {name} at {}", built.display()))?;
        let dest = dist.join(format!("{name}.wasm"));
        let status = if fs::read(&dest).is_ok_and(|old| old == bytes) {
            "unchanged"
        } else {
            replace_atomically(&dest, &bytes)?;
            "updated"
        };
        println!(
            "{:<36} {:>10}  {status}",
            dest.strip_prefix(root).unwrap_or(&dest).display(),
            human_size(bytes.len())
        );
    }
    Ok(())
}

/// Write `bytes` to `dest` so readers see either the old or the new file:
/// a hidden temp file next to it (same filesystem, and not named `*.wasm`
/// so a directory watcher ignores it), then a rename over `dest`.
fn replace_atomically(dest: &Path, bytes: &[u8]) -> Result<()> {
    let file_name = dest
        .file_name()
        .and_then(OsStr::to_str)
        .context("destination has no file name")?;
    let temp: PathBuf = dest.with_file_name(format!(".{file_name}.{}.tmp", std::process::id()));
    fs::write(&temp, bytes).with_context(|| format!("writing {}", temp.display()))?;
    if let Err(e) = fs::rename(&temp, dest) {
        let _ = fs::remove_file(&temp);
        return Err(e)
            .with_context(|| format!("renaming {} to {}", temp.display(), dest.display()));
    }
    Ok(())
}

/// `123.4 KiB` style sizes for the summary lines.
fn human_size(bytes: usize) -> String {
    if bytes < 1024 {
        format!("{bytes} B")
    } else if bytes < 1024 * 1024 {
        format!("{:.1} KiB", bytes as f64 / 1024.0)
    } else {
        format!("{:.2} MiB", bytes as f64 / (1024.0 * 1024.0))
    }
}
