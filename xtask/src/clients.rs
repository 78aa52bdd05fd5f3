//! The real clients the tests drive: `amtool` and
//! `prometheus-alertmanager` (Debian's `prometheus-alertmanager` package),
//! the Python Sentry SDK in a venv at `<target>/pyenv`, and for the
//! dashboard Debian's Chromium with `playwright-core` from npm in
//! `<target>/browser`. Installed if
//! missing; a loud failure if they cannot be — tests never skip them.
//! (The plugin toolchains, componentize-py and jco, are installed by
//! `tocsin plugin build` itself, into `<target>/plugin-toolchains` for the
//! tests: the path users take.)
//!
//! The tests find the venv by convention (`<target>/pyenv/bin/python`). No
//! environment variable is exported: the tests' environment reaches the
//! `tocsin` processes they start, which refuse unknown `TOCSIN_*` variables.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

/// Whether `name` is an executable on `PATH`.
fn on_path(name: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|paths| {
        std::env::split_paths(&paths).any(|dir| {
            let p = dir.join(name);
            p.is_file()
                && std::fs::metadata(&p)
                    .map(|m| {
                        use std::os::unix::fs::PermissionsExt;
                        m.permissions().mode() & 0o111 != 0
                    })
                    .unwrap_or(false)
        })
    })
}

fn run(cmd: &mut Command, what: &str) -> Result<bool> {
    eprintln!("xtask: {what}");
    let status = cmd.status().with_context(|| format!("starting {what}"))?;
    Ok(status.success())
}

/// The Debian `package` that provides `binaries`, installed with apt if
/// any is missing; `why` says which tests need it.
fn apt(package: &str, binaries: &[&str], why: &str) -> Result<()> {
    if binaries.iter().all(|b| on_path(b)) {
        eprintln!("xtask: {} installed", binaries.join(" and "));
        return Ok(());
    }
    let install = || {
        let mut c = Command::new("apt-get");
        c.args(["install", "-y", "--no-install-recommends", package])
            .env("DEBIAN_FRONTEND", "noninteractive");
        run(&mut c, &format!("apt-get install -y {package}"))
    };
    if !install()? {
        let mut update = Command::new("apt-get");
        update.arg("update");
        if !run(&mut update, "apt-get update")? {
            bail!("`apt-get update` failed; install {package} by hand ({why})");
        }
        if !install()? {
            bail!("`apt-get install {package}` failed; {why}");
        }
    }
    for b in binaries {
        if !on_path(b) {
            bail!("{b} is still not on PATH after installing {package}");
        }
    }
    Ok(())
}

/// The browser tests' Playwright (`playwright-core`, which drives the
/// machine's Chromium and downloads nothing), in `<target>/browser`.
const PLAYWRIGHT: &str = "playwright-core@1.64.1";

fn playwright(root: &Path) -> Result<()> {
    let dir = target_dir(root).join("browser");
    if dir
        .join("node_modules/playwright-core/package.json")
        .is_file()
    {
        eprintln!("xtask: playwright-core installed in {}", dir.display());
        return Ok(());
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut c = Command::new("npm");
    c.args(["install", "--no-audit", "--no-fund", "--prefix"])
        .arg(&dir)
        .arg(PLAYWRIGHT);
    if !run(&mut c, &format!("npm install {PLAYWRIGHT}"))? {
        bail!(
            "`npm install {PLAYWRIGHT}` failed in {}; the dashboard test needs it",
            dir.display()
        );
    }
    Ok(())
}

fn target_dir(root: &Path) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"))
}

/// The Python packages the tests drive: the Sentry SDK (ingest tests).
const PACKAGES: [&str; 1] = ["sentry-sdk"];

fn imports_sentry(python: &Path) -> bool {
    python.is_file()
        && Command::new(python)
            .args(["-c", "import sentry_sdk"])
            .status()
            .is_ok_and(|s| s.success())
}

/// A venv at `<target>/pyenv` with `sentry-sdk`; returns its python.
fn python_sentry(root: &Path) -> Result<PathBuf> {
    let venv = target_dir(root).join("pyenv");
    let python = venv.join("bin").join("python");
    if imports_sentry(&python) {
        eprintln!(
            "xtask: {} installed in {}",
            PACKAGES.join(", "),
            venv.display()
        );
        return Ok(python);
    }
    if !python.is_file() {
        let mut c = Command::new("python3");
        c.args(["-m", "venv"]).arg(&venv);
        if !run(&mut c, &format!("python3 -m venv {}", venv.display()))? {
            bail!(
                "could not create a Python venv at {} (is python3 with the venv module installed?)",
                venv.display()
            );
        }
    }
    let pip = venv.join("bin").join("pip");
    let mut c = Command::new(&pip);
    c.args(["install", "--quiet"]).args(PACKAGES);
    let what = PACKAGES.join(" ");
    if !run(&mut c, &format!("{} install {what}", pip.display()))? {
        bail!("`pip install {what}` failed in {}", venv.display());
    }
    if !imports_sentry(&python) {
        bail!("{} still cannot import sentry_sdk", python.display());
    }
    Ok(python)
}

/// Makes sure every client is installed.
pub fn ensure() -> Result<()> {
    apt(
        "prometheus-alertmanager",
        &["amtool", "prometheus-alertmanager"],
        "the ingest tests need amtool and prometheus-alertmanager",
    )?;
    apt(
        "chromium",
        &["chromium"],
        "the dashboard test drives a real Chromium",
    )?;
    if !on_path("node") || !on_path("npm") {
        bail!("node and npm are not on PATH; the dashboard test drives Chromium with Playwright on Node.js");
    }
    playwright(&crate::root())?;
    python_sentry(&crate::root())?;
    Ok(())
}
