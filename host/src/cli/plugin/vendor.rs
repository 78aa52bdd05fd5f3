//! The files `tocsin plugin new` copies into a project from this
//! repository: the SDK and the state semantics for Rust projects, the WIT
//! contract for every language. Embedded in the binary, so a project made
//! by any `tocsin` builds outside the repository.

/// The SDK and the state semantics its native tests use, vendored into
/// every Rust project (`vendor/<path>`) until the SDK is on crates.io. The
/// WIT contract is inside (`vendor/sdk/wit`). A test checks that this list
/// holds every file of the two crates.
pub const VENDOR: [(&str, &str); 18] = [
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

/// The WIT contract alone, for Python and JavaScript projects (`wit/`):
/// the entries of [`VENDOR`] under `sdk/wit/`.
pub fn wit() -> impl Iterator<Item = (&'static str, &'static str)> {
    VENDOR
        .iter()
        .filter_map(|(path, text)| Some((path.strip_prefix("sdk/")?, *text)))
        .filter(|(path, _)| path.starts_with("wit/"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

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
            "VENDOR in vendor.rs must list exactly these files"
        );
    }

    #[test]
    fn the_wit_is_the_sdks() {
        let files: Vec<&str> = wit().map(|(path, _)| path).collect();
        assert!(files.contains(&"wit/worlds.wit"), "{files:?}");
        assert_eq!(files.len(), 4, "{files:?}");
    }
}
