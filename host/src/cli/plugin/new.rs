//! `tocsin plugin new` writes a standalone plugin project from the
//! templates in `host/templates/`, in Rust, Python or JavaScript. What a
//! project needs from this repository (the SDK, the WIT) travels with it
//! (see [`super::vendor`]), so it builds anywhere.

use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::{Args, ValueEnum};

use super::vendor;
use super::WorldArg;
use crate::plugin::World;

/// Languages a project can be written in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Lang {
    Rust,
    Python,
    Js,
}

impl Lang {
    /// The name a README uses.
    fn display(self) -> &'static str {
        match self {
            Lang::Rust => "Rust",
            Lang::Python => "Python",
            Lang::Js => "JavaScript",
        }
    }
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

/// A template: its text and, per world, which file of the language it is.
macro_rules! template {
    ($path:literal) => {
        include_str!(concat!("../../../templates/", $path))
    };
}

/// Per world: (source, unit test) of each language.
fn sources(lang: Lang, world: World) -> (&'static str, &'static str) {
    match (lang, world) {
        (Lang::Rust, World::Aggregator) => (template!("rust/aggregator.rs"), ""),
        (Lang::Rust, World::Router) => (template!("rust/router.rs"), ""),
        (Lang::Rust, World::Channel) => (template!("rust/channel.rs"), ""),
        (Lang::Python, World::Aggregator) => (
            template!("python/aggregator.py"),
            template!("python/test_aggregator.py"),
        ),
        (Lang::Python, World::Router) => (
            template!("python/router.py"),
            template!("python/test_router.py"),
        ),
        (Lang::Python, World::Channel) => (
            template!("python/channel.py"),
            template!("python/test_channel.py"),
        ),
        (Lang::Js, World::Aggregator) => (
            template!("js/aggregator.js"),
            template!("js/aggregator.test.mjs"),
        ),
        (Lang::Js, World::Router) => (template!("js/router.js"), template!("js/router.test.mjs")),
        (Lang::Js, World::Channel) => {
            (template!("js/channel.js"), template!("js/channel.test.mjs"))
        }
    }
}

/// The project's files for `lang` and `world`, filled by `fill`.
fn files(lang: Lang, world: World, name: &str) -> Vec<(PathBuf, String)> {
    let (layout, unit) = match lang {
        Lang::Rust => (
            template!("rust/layout.md"),
            "cargo test                                # unit tests, natively",
        ),
        Lang::Python => (
            template!("python/layout.md"),
            "python3 -m unittest discover -s tests     # unit tests, natively",
        ),
        Lang::Js => (
            template!("js/layout.md"),
            "npm test                                  # unit tests, natively (node --test)",
        ),
    };
    let fill = |text: &str| {
        text.replace("{{layout}}", layout)
            .replace("{{unit_command}}", unit)
            .replace("{{name}}", name)
            .replace("{{world}}", world.as_str())
            .replace("{{lang}}", lang.display())
            .replace("{{stages}}", &stages(world, name))
    };
    let (source, test) = sources(lang, world);
    let mut files: Vec<(PathBuf, String)> = vec![
        ("events.jsonl".into(), template!("events.jsonl").to_string()),
        (
            format!("{name}.toml").into(),
            fill(template!("rule.toml.tmpl")),
        ),
        ("README.md".into(), fill(template!("README.md.tmpl"))),
        (".gitignore".into(), template!("gitignore.tmpl").to_string()),
    ];
    match lang {
        Lang::Rust => {
            files.push(("Cargo.toml".into(), fill(template!("rust/Cargo.toml.tmpl"))));
            files.push(("src/lib.rs".into(), fill(source)));
            for (file, text) in vendor::VENDOR {
                files.push((PathBuf::from("vendor").join(file), text.to_string()));
            }
        }
        Lang::Python => {
            files.push((
                "pyproject.toml".into(),
                fill(template!("python/pyproject.toml.tmpl")),
            ));
            files.push(("src/app.py".into(), fill(source)));
            files.push((
                format!("tests/test_{}.py", world.as_str()).into(),
                fill(test),
            ));
            files.push((
                "tests/fake_host.py".into(),
                template!("python/fake_host.py").to_string(),
            ));
        }
        Lang::Js => {
            files.push((
                "package.json".into(),
                fill(template!("js/package.json.tmpl")),
            ));
            files.push(("src/app.js".into(), fill(source)));
            files.push((
                format!("test/{}.test.mjs", world.as_str()).into(),
                fill(test),
            ));
            files.push((
                "test/fake-host.mjs".into(),
                template!("js/fake-host.mjs").to_string(),
            ));
            files.push((
                "test/hooks.mjs".into(),
                template!("js/hooks.mjs").to_string(),
            ));
        }
    }
    if lang != Lang::Rust {
        for (file, text) in vendor::wit() {
            files.push((file.into(), text.to_string()));
        }
    }
    files
}

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
    for (path, text) in files(args.lang, world, name) {
        let full = dir.join(&path);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_language_and_world_fills_every_placeholder() {
        for lang in [Lang::Rust, Lang::Python, Lang::Js] {
            for world in [World::Aggregator, World::Router, World::Channel] {
                for (path, text) in files(lang, world, "demo") {
                    assert!(
                        !text.contains("{{"),
                        "{lang:?} {world:?}: {} keeps a placeholder",
                        path.display()
                    );
                }
            }
        }
    }
}
