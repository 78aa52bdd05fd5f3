//! The Python and JavaScript component toolchains `tocsin plugin build`
//! runs, pinned to versions tested with this engine and installed on first
//! use into a local cache (PyPI through a venv, npm into a prefix), so a
//! plugin author needs only `python3` or `node` on the machine.
//!
//! Why pinned: the toolchains move fast and not always forward here — jco
//! 1.35.0 builds nothing (`failed to get path metadata`), and each
//! componentize-py release imports a different WASI 0.2.x.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context};

/// How a toolchain is installed.
#[derive(Debug, Clone, Copy)]
enum Installer {
    /// `python3 -m venv DIR` then `DIR/bin/pip install PACKAGES`.
    Pip,
    /// `npm install --prefix DIR PACKAGES`.
    Npm,
}

/// One pinned toolchain.
#[derive(Debug, Clone, Copy)]
pub struct Toolchain {
    /// What the user reads in progress lines.
    pub name: &'static str,
    /// Its folder in the cache (the versions are in it, so a new pin
    /// installs beside the old one).
    folder: &'static str,
    packages: &'static [&'static str],
    installer: Installer,
    /// The program to run, relative to its folder.
    program: &'static str,
}

/// componentize-py, for Python plugins.
pub const COMPONENTIZE_PY: Toolchain = Toolchain {
    name: "componentize-py 0.25.1",
    folder: "componentize-py-0.25.1",
    packages: &["componentize-py==0.25.1"],
    installer: Installer::Pip,
    program: "bin/componentize-py",
};

/// jco with ComponentizeJS, for JavaScript plugins.
pub const JCO: Toolchain = Toolchain {
    name: "jco 1.34.0 with ComponentizeJS 0.23.0",
    folder: "jco-1.34.0-componentize-js-0.23.0",
    packages: &[
        "@bytecodealliance/jco@1.34.0",
        "@bytecodealliance/componentize-js@0.23.0",
    ],
    installer: Installer::Npm,
    program: "node_modules/.bin/jco",
};

/// The cache: `TOCSIN_TOOLCHAINS`, else `$XDG_CACHE_HOME/tocsin/toolchains`,
/// else `~/.cache/tocsin/toolchains`.
pub fn cache_root() -> anyhow::Result<PathBuf> {
    if let Some(dir) = std::env::var_os("TOCSIN_TOOLCHAINS").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(dir));
    }
    super::user_cache("toolchains")
        .context("no cache folder: set TOCSIN_TOOLCHAINS, XDG_CACHE_HOME or HOME")
}

/// The program of `toolchain`, installing it first when it is not in the
/// cache. Concurrent builds wait for one install (a file lock); an install
/// that died half-way is redone (it counts only once its marker is written).
pub fn ensure(toolchain: &Toolchain) -> anyhow::Result<PathBuf> {
    let root = cache_root()?;
    std::fs::create_dir_all(&root).with_context(|| format!("creating {}", root.display()))?;
    let dir = root.join(toolchain.folder);
    let program = dir.join(toolchain.program);
    let marker = dir.join(".tocsin-installed");
    let lock_path = root.join(format!(".{}.lock", toolchain.folder));
    let lock =
        File::create(&lock_path).with_context(|| format!("creating {}", lock_path.display()))?;
    lock.lock()
        .with_context(|| format!("locking {}", lock_path.display()))?;
    if marker.is_file() && program.is_file() {
        println!("using {} from {}", toolchain.name, dir.display());
        return Ok(program);
    }
    if dir.exists() {
        std::fs::remove_dir_all(&dir)
            .with_context(|| format!("removing the partial install {}", dir.display()))?;
    }
    println!(
        "installing {} into {} (first build only; a minute or two)",
        toolchain.name,
        dir.display()
    );
    let started = std::time::Instant::now();
    install(toolchain, &dir)?;
    if !program.is_file() {
        bail!(
            "installing {} left no {}",
            toolchain.name,
            program.display()
        );
    }
    std::fs::write(&marker, toolchain.packages.join("\n"))
        .with_context(|| format!("writing {}", marker.display()))?;
    println!(
        "installed {} in {:.0} s",
        toolchain.name,
        started.elapsed().as_secs_f64()
    );
    Ok(program)
}

/// Runs the installer of `toolchain` into `dir`.
fn install(toolchain: &Toolchain, dir: &Path) -> anyhow::Result<()> {
    match toolchain.installer {
        Installer::Pip => {
            let mut venv = Command::new("python3");
            venv.args(["-m", "venv"]).arg(dir);
            run(&mut venv, "python3 (3.9 or newer, with the venv module)")?;
            let mut pip = Command::new(dir.join("bin/pip"));
            pip.args(["install", "--disable-pip-version-check"])
                .args(toolchain.packages);
            run(&mut pip, "pip")
        }
        Installer::Npm => {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            let mut npm = Command::new("npm");
            npm.args(["install", "--no-fund", "--no-audit", "--prefix"])
                .arg(dir)
                .args(toolchain.packages);
            run(&mut npm, "npm (Node.js 18 or newer)")
        }
    }
}

/// Runs `command`, printing it first; an error names what is needed when
/// the program is missing.
pub fn run(command: &mut Command, needs: &str) -> anyhow::Result<()> {
    println!("running: {}", shown(command));
    let status = command.status().map_err(|e| {
        anyhow::anyhow!(
            "could not run {}: {e} (this step needs {needs})",
            command.get_program().to_string_lossy()
        )
    })?;
    if !status.success() {
        bail!("{} failed ({status})", shown(command));
    }
    Ok(())
}

/// `command` as a shell line.
pub fn shown(command: &Command) -> String {
    std::iter::once(command.get_program())
        .chain(command.get_args())
        .map(|a| a.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}
