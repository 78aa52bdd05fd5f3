//! `tocsin plugin new` writes a standalone plugin project from the
//! templates in `host/templates/` (the SDK and the WIT travel with it, so
//! the project builds outside this repository); `tocsin plugin build` builds one.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context};
use clap::{Args, ValueEnum};

use super::WorldArg;
use crate::plugin::World;

/// Languages a project can be written in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Lang {
    Rust,
    Python,
    Js,
}

/// Arguments of `tocsin plugin new`.
#[derive(Args, Debug)]
pub struct NewArgs {
    /// Plugin name: the `.wasm` file name rules refer to (letters, digits,
    /// `-` and `_`).
    pub name: String,
    #[arg(long, value_enum, default_value = "aggregator")]
    pub world: WorldArg,
    #[arg(long, value_enum, default_value = "rust")]
    pub lang: Lang,
    /// Where to write the project (default: ./NAME); must be empty.
    #[arg(long)]
    pub dir: Option<PathBuf>,
}

/// Arguments of `tocsin plugin build`.
#[derive(Args, Debug)]
pub struct BuildArgs {
    /// The project folder (default: the current one).
    #[arg(default_value = ".")]
    pub dir: PathBuf,
}

/// The SDK and the state semantics its native tests use, vendored into
/// every Rust project (`vendor/<path>`) until the SDK is on crates.io. The
/// WIT contract is inside (`vendor/sdk/wit`). A test checks that this list
/// holds every file of the two crates.
const VENDOR: [(&str, &str); 18] = [
    ("sdk/Cargo.toml", include_str!("../../../../sdk/Cargo.toml")),
    ("sdk/README.md", include_str!("../../../../sdk/README.md")),
    ("sdk/src/lib.rs", include_str!("../../../../sdk/src/lib.rs")),
    (
        "sdk/src/config.rs",
        include_str!("../../../../sdk/src/config.rs"),
    ),
    (
        "sdk/src/host.rs",
        include_str!("../../../../sdk/src/host.rs"),
    ),
    (
        "sdk/src/types.rs",
        include_str!("../../../../sdk/src/types.rs"),
    ),
    (
        "sdk/src/testing.rs",
        include_str!("../../../../sdk/src/testing.rs"),
    ),
    (
        "sdk/src/chat.rs",
        include_str!("../../../../sdk/src/chat.rs"),
    ),
    (
        "sdk/src/sign.rs",
        include_str!("../../../../sdk/src/sign.rs"),
    ),
    (
        "sdk/src/world/aggregator.rs",
        include_str!("../../../../sdk/src/world/aggregator.rs"),
    ),
    (
        "sdk/src/world/router.rs",
        include_str!("../../../../sdk/src/world/router.rs"),
    ),
    (
        "sdk/src/world/channel.rs",
        include_str!("../../../../sdk/src/world/channel.rs"),
    ),
    (
        "sdk/wit/types.wit",
        include_str!("../../../../sdk/wit/types.wit"),
    ),
    (
        "sdk/wit/state.wit",
        include_str!("../../../../sdk/wit/state.wit"),
    ),
    (
        "sdk/wit/deliver.wit",
        include_str!("../../../../sdk/wit/deliver.wit"),
    ),
    (
        "sdk/wit/worlds.wit",
        include_str!("../../../../sdk/wit/worlds.wit"),
    ),
    (
        "state-ops/Cargo.toml",
        include_str!("../../../../state-ops/Cargo.toml"),
    ),
    (
        "state-ops/src/lib.rs",
        include_str!("../../../../state-ops/src/lib.rs"),
    ),
];

const RUST_CARGO: &str = include_str!("../../../templates/rust/Cargo.toml.tmpl");
const RUST_AGGREGATOR: &str = include_str!("../../../templates/rust/aggregator.rs");
const RUST_ROUTER: &str = include_str!("../../../templates/rust/router.rs");
const RUST_CHANNEL: &str = include_str!("../../../templates/rust/channel.rs");
const EVENTS: &str = include_str!("../../../templates/events.jsonl");
const RULE: &str = include_str!("../../../templates/rule.toml.tmpl");
const README: &str = include_str!("../../../templates/README.md.tmpl");
const GITIGNORE: &str = include_str!("../../../templates/gitignore.tmpl");

/// Writes the project; prints what it wrote and what to run next.
pub fn new(args: NewArgs) -> anyhow::Result<()> {
    let name = &args.name;
    // A name rules can use (the catalog's rule) that is also a crate name.
    if !crate::catalog::rule::valid_name(name)
        || name.contains('.')
        || !name.starts_with(|c: char| c.is_ascii_alphabetic())
    {
        bail!("plugin name {name:?}: use a letter, then letters, digits, `-` or `_`");
    }
    if args.lang != Lang::Rust {
        bail!(
            "--lang {:?}: only Rust templates ship in this version; Python and JavaScript \
             components built with componentize-py and jco load in the engine (see \
             docs/plugins.md), but `tocsin plugin new` cannot write them yet",
            args.lang
        );
    }
    let world = World::from(args.world);
    let dir = args.dir.clone().unwrap_or_else(|| PathBuf::from(name));
    if dir.exists()
        && std::fs::read_dir(&dir)
            .with_context(|| format!("reading {}", dir.display()))?
            .next()
            .is_some()
    {
        bail!(
            "{} is not empty; pick a new folder with --dir",
            dir.display()
        );
    }
    let source = match world {
        World::Aggregator => RUST_AGGREGATOR,
        World::Router => RUST_ROUTER,
        World::Channel => RUST_CHANNEL,
    };
    let fill = |text: &str| {
        text.replace("{{name}}", name)
            .replace("{{world}}", world.as_str())
            .replace("{{lang}}", "Rust")
            .replace("{{source}}", "src/lib.rs")
            .replace("{{unit}}", "Its unit tests run natively: `cargo test`.")
            .replace("{{stages}}", &stages(world, name))
    };
    let mut files: Vec<(PathBuf, String)> = vec![
        ("Cargo.toml".into(), fill(RUST_CARGO)),
        ("src/lib.rs".into(), fill(source)),
        ("events.jsonl".into(), EVENTS.to_string()),
        (format!("{name}.toml").into(), fill(RULE)),
        ("README.md".into(), fill(README)),
        (".gitignore".into(), GITIGNORE.to_string()),
    ];
    for (file, text) in VENDOR {
        files.push((Path::new("vendor").join(file), text.to_string()));
    }
    for (path, text) in &files {
        let full = dir.join(path);
        if let Some(parent) = full.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        std::fs::write(&full, text).with_context(|| format!("writing {}", full.display()))?;
        println!("wrote {}", full.display());
    }
    println!(
        "\nnext:\n  cd {}\n  tocsin plugin build\n  tocsin plugin test {name}.wasm --events events.jsonl",
        dir.display()
    );
    Ok(())
}

/// The rule's stages for a plugin of `world` named `name`.
fn stages(world: World, name: &str) -> String {
    let websocket = "[[channels]]\nplugin = \"websocket\"\ngrants = { websocket = true }";
    match world {
        World::Aggregator => format!(
            "[aggregate]\nplugin = \"{name}\"\nconfig = {{ threshold = 3, window = \"1m\" }}\n\n{websocket}"
        ),
        World::Router => format!(
            "[aggregate]\nplugin = \"threshold\"\nconfig = {{ threshold = 1, window = \"1m\" }}\n\n\
             [route]\nplugin = \"{name}\"\n\n{websocket}"
        ),
        World::Channel => format!(
            "[aggregate]\nplugin = \"threshold\"\nconfig = {{ threshold = 1, window = \"1m\" }}\n\n\
             [[channels]]\nplugin = \"{name}\"\ngrants = {{ websocket = true }}\nconfig = {{ prefix = \"[{name}]\" }}"
        ),
    }
}

/// Builds the project in `args.dir`; prints each command it runs.
pub fn build(args: BuildArgs) -> anyhow::Result<i32> {
    let dir = &args.dir;
    let manifest = dir.join("Cargo.toml");
    if !manifest.exists() {
        bail!(
            "{}: no Cargo.toml (only Rust projects build with `tocsin plugin build` in this version)",
            dir.display()
        );
    }
    let text = std::fs::read_to_string(&manifest)
        .with_context(|| format!("reading {}", manifest.display()))?;
    let name = package_name(&text)
        .with_context(|| format!("{}: no [package] name", manifest.display()))?;
    ensure_wasip2()?;
    let mut cargo = Command::new("cargo");
    cargo
        .args(["build", "--release", "--target", "wasm32-wasip2"])
        .current_dir(dir);
    println!(
        "running: cargo build --release --target wasm32-wasip2 (in {})",
        dir.display()
    );
    let status = cargo.status().context("running cargo")?;
    if !status.success() {
        eprintln!("error: cargo build failed ({status})");
        return Ok(1);
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| dir.join("target"));
    let built = target
        .join("wasm32-wasip2/release")
        .join(format!("{}.wasm", name.replace('-', "_")));
    let out = dir.join(format!("{name}.wasm"));
    std::fs::copy(&built, &out)
        .with_context(|| format!("copying {} to {}", built.display(), out.display()))?;
    let size = std::fs::metadata(&out).map(|m| m.len()).unwrap_or(0);
    println!("built {} ({:.1} KiB)", out.display(), size as f64 / 1024.0);
    Ok(0)
}

/// `name = "…"` of the `[package]` table.
fn package_name(manifest: &str) -> Option<String> {
    let table: toml::Table = manifest.parse().ok()?;
    table
        .get("package")?
        .get("name")?
        .as_str()
        .map(str::to_string)
}

/// Installs the `wasm32-wasip2` target with rustup when it is missing.
fn ensure_wasip2() -> anyhow::Result<()> {
    let installed = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output();
    match installed {
        Ok(out) if String::from_utf8_lossy(&out.stdout).contains("wasm32-wasip2") => Ok(()),
        Ok(_) => {
            println!("running: rustup target add wasm32-wasip2");
            let status = Command::new("rustup")
                .args(["target", "add", "wasm32-wasip2"])
                .status()
                .context("running rustup")?;
            if !status.success() {
                bail!("rustup target add wasm32-wasip2 failed ({status})");
            }
            Ok(())
        }
        // No rustup: cargo will say whether the target is there.
        Err(_) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every file of the two vendored crates, relative to the repository.
    fn on_disk(root: &Path, dir: &str, out: &mut Vec<String>) {
        let Ok(entries) = std::fs::read_dir(root.join(dir)) else {
            return;
        };
        for entry in entries.flatten() {
            let rel = format!("{dir}/{}", entry.file_name().to_string_lossy());
            if entry.path().is_dir() {
                if !rel.ends_with("/target") {
                    on_disk(root, &rel, out);
                }
            } else {
                out.push(rel);
            }
        }
    }

    #[test]
    fn the_vendored_sdk_lists_every_file_of_its_crates() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let mut files = Vec::new();
        on_disk(&root, "sdk", &mut files);
        on_disk(&root, "state-ops", &mut files);
        files.sort();
        let mut listed: Vec<String> = VENDOR.iter().map(|(f, _)| f.to_string()).collect();
        listed.sort();
        assert_eq!(
            listed, files,
            "VENDOR in new.rs must list exactly these files"
        );
    }
}
