//! `tocsin plugin build` builds the project in a folder into a component:
//! cargo for Rust, componentize-py for Python, jco (ComponentizeJS) for
//! JavaScript. It says exactly what it runs, installs a missing toolchain
//! first ([`super::toolchain`]) and copies `NAME.wasm` beside the project.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context};
use clap::Args;

use super::toolchain::{self, COMPONENTIZE_PY, JCO};

/// Arguments of `tocsin plugin build`.
#[derive(Args, Debug)]
pub struct BuildArgs {
    /// The project folder (default: the current one).
    #[arg(default_value = ".")]
    pub dir: PathBuf,
}

/// What a project folder holds, read from its manifest.
#[derive(Debug, PartialEq)]
enum Project {
    /// `Cargo.toml`: the package name.
    Rust { name: String },
    /// `pyproject.toml`: `[project] name`, `[tool.tocsin] world`.
    Python { name: String, world: String },
    /// `package.json`: `name`, `tocsin.world`.
    Js { name: String, world: String },
}

impl Project {
    /// Reads the manifest in `dir`; errors say which file and key.
    fn read(dir: &Path) -> anyhow::Result<Self> {
        let read = |file: &str| {
            let path = dir.join(file);
            std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))
        };
        let shown = |file: &str| dir.join(file).display().to_string();
        if dir.join("Cargo.toml").is_file() {
            let table: toml::Table = read("Cargo.toml")?
                .parse()
                .with_context(|| shown("Cargo.toml"))?;
            let name = table
                .get("package")
                .and_then(|p| p.get("name"))
                .and_then(|n| n.as_str())
                .with_context(|| format!("{}: no [package] name", shown("Cargo.toml")))?;
            return Ok(Project::Rust { name: name.into() });
        }
        if dir.join("pyproject.toml").is_file() {
            let table: toml::Table = read("pyproject.toml")?
                .parse()
                .with_context(|| shown("pyproject.toml"))?;
            let name = table
                .get("project")
                .and_then(|p| p.get("name"))
                .and_then(|n| n.as_str())
                .with_context(|| format!("{}: no [project] name", shown("pyproject.toml")))?;
            let world = table
                .get("tool")
                .and_then(|t| t.get("tocsin"))
                .and_then(|t| t.get("world"))
                .and_then(|w| w.as_str())
                .with_context(|| {
                    format!(
                        "{}: no [tool.tocsin] world = \"aggregator\" | \"router\" | \"channel\"",
                        shown("pyproject.toml")
                    )
                })?;
            return Ok(Project::Python {
                name: name.into(),
                world: checked_world(world, "pyproject.toml")?,
            });
        }
        if dir.join("package.json").is_file() {
            let json: serde_json::Value = serde_json::from_str(&read("package.json")?)
                .with_context(|| shown("package.json"))?;
            let name = json["name"]
                .as_str()
                .with_context(|| format!("{}: no \"name\"", shown("package.json")))?;
            let world = json["tocsin"]["world"].as_str().with_context(|| {
                format!(
                    "{}: no \"tocsin\": {{ \"world\": \"aggregator\" | \"router\" | \"channel\" }}",
                    shown("package.json")
                )
            })?;
            return Ok(Project::Js {
                name: name.into(),
                world: checked_world(world, "package.json")?,
            });
        }
        bail!(
            "{}: not a plugin project (no Cargo.toml, pyproject.toml or package.json); \
             `tocsin plugin new NAME --lang rust|python|js` writes one",
            dir.display()
        )
    }

    fn name(&self) -> &str {
        match self {
            Project::Rust { name } | Project::Python { name, .. } | Project::Js { name, .. } => {
                name
            }
        }
    }
}

/// `world` when it is one of the three.
fn checked_world(world: &str, file: &str) -> anyhow::Result<String> {
    match world {
        "aggregator" | "router" | "channel" => Ok(world.into()),
        other => bail!("{file}: world {other:?}: expected aggregator, router or channel"),
    }
}

/// Builds the project in `args.dir`; prints each command it runs.
pub fn build(args: BuildArgs) -> anyhow::Result<i32> {
    let dir = &args.dir;
    let project = Project::read(dir)?;
    let name = project.name().to_string();
    let out = dir.join(format!("{name}.wasm"));
    let started = Instant::now();
    let result = match &project {
        Project::Rust { name } => build_rust(dir, name, &out),
        Project::Python { world, .. } => {
            let program = toolchain::ensure(&COMPONENTIZE_PY)?;
            let tmp = tmp_output(&out);
            let mut c = Command::new(program);
            c.args([
                "-d",
                "wit",
                "-w",
                world,
                "componentize",
                "app",
                "-p",
                "src",
                "-o",
            ])
            .arg(&tmp)
            .current_dir(dir);
            finish(toolchain::run(&mut c, "componentize-py"), &tmp, &out)
        }
        Project::Js { world, .. } => {
            let program = toolchain::ensure(&JCO)?;
            let tmp = tmp_output(&out);
            let mut c = Command::new(program);
            c.args([
                "componentize",
                "src/app.js",
                "--wit",
                "wit",
                "-n",
                world,
                "-o",
            ])
            .arg(&tmp)
            .current_dir(dir);
            finish(toolchain::run(&mut c, "Node.js 18 or newer"), &tmp, &out)
        }
    };
    if let Err(e) = result {
        eprintln!("error: {e:#}");
        return Ok(1);
    }
    let size = std::fs::metadata(&out).map(|m| m.len()).unwrap_or(0);
    println!(
        "built {} ({}) in {:.1} s",
        out.display(),
        human(size),
        started.elapsed().as_secs_f64()
    );
    Ok(0)
}

/// The file a tool writes before it is moved over `out`, so a folder
/// watched by an engine never sees half a component.
fn tmp_output(out: &Path) -> PathBuf {
    out.with_extension("wasm.part")
}

/// Moves `tmp` over `out` when the tool succeeded.
fn finish(ran: anyhow::Result<()>, tmp: &Path, out: &Path) -> anyhow::Result<()> {
    ran?;
    std::fs::rename(tmp, out)
        .with_context(|| format!("moving {} to {}", tmp.display(), out.display()))
}

/// `cargo build` for `wasm32-wasip2`, then copies the component to `out`.
fn build_rust(dir: &Path, name: &str, out: &Path) -> anyhow::Result<()> {
    ensure_wasip2()?;
    let mut cargo = Command::new("cargo");
    cargo
        .args(["build", "--release", "--target", "wasm32-wasip2"])
        .current_dir(dir);
    toolchain::run(&mut cargo, "Rust's cargo (rustup.rs)")?;
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| dir.join("target"));
    let built = target
        .join("wasm32-wasip2/release")
        .join(format!("{}.wasm", name.replace('-', "_")));
    let tmp = tmp_output(out);
    std::fs::copy(&built, &tmp)
        .with_context(|| format!("copying {} to {}", built.display(), tmp.display()))?;
    finish(Ok(()), &tmp, out)
}

/// Sizes as people read them.
fn human(bytes: u64) -> String {
    if bytes >= 1 << 20 {
        format!("{:.1} MiB", bytes as f64 / f64::from(1 << 20))
    } else {
        format!("{:.1} KiB", bytes as f64 / 1024.0)
    }
}

/// Installs the `wasm32-wasip2` target with rustup when it is missing.
fn ensure_wasip2() -> anyhow::Result<()> {
    let installed = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output();
    match installed {
        Ok(out) if String::from_utf8_lossy(&out.stdout).contains("wasm32-wasip2") => Ok(()),
        Ok(_) => {
            let mut add = Command::new("rustup");
            add.args(["target", "add", "wasm32-wasip2"]);
            toolchain::run(&mut add, "rustup")
        }
        // No rustup: cargo will say whether the target is there.
        Err(_) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifests_name_the_project_and_errors_name_the_file() {
        let dir = std::env::temp_dir().join(format!("tocsin-build-{}", uuid::Uuid::now_v7()));
        std::fs::create_dir_all(&dir).unwrap();
        let e = Project::read(&dir).unwrap_err().to_string();
        assert!(e.contains("not a plugin project"), "{e}");
        std::fs::write(
            dir.join("package.json"),
            r#"{"name": "a", "tocsin": {"world": "sink"}}"#,
        )
        .unwrap();
        let e = format!("{:#}", Project::read(&dir).unwrap_err());
        assert!(e.contains("package.json: world \"sink\""), "{e}");
        std::fs::write(dir.join("pyproject.toml"), "[project]\nname = \"p\"\n").unwrap();
        let e = format!("{:#}", Project::read(&dir).unwrap_err());
        assert!(e.contains("[tool.tocsin] world"), "{e}");
        std::fs::write(
            dir.join("pyproject.toml"),
            "[project]\nname = \"p\"\n[tool.tocsin]\nworld = \"router\"\n",
        )
        .unwrap();
        assert_eq!(
            Project::read(&dir).unwrap(),
            Project::Python {
                name: "p".into(),
                world: "router".into()
            }
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
