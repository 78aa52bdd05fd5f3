//! Turning `.wasm` bytes into a ready-to-instantiate plugin.
//!
//! Validation happens here, before anything is swapped in: the bytes must be
//! a component, compile, export one of the three worlds with the right
//! types, and import nothing beyond what that world offers. Every failure
//! says what and where, so `tocsin check` and `/v1/plugins` can show it.

use std::hash::{Hash, Hasher};
use std::path::Path;
use std::time::Instant;

use serde::Serialize;
use wasmtime::component::types::ComponentItem;
use wasmtime::component::{Component, HasSelf, Linker};

use super::bindings::{aggregator, channel, router};
use super::{HostCtx, Runtime};

/// The world a plugin implements, detected from its exports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum World {
    Aggregator,
    Router,
    Channel,
}

impl World {
    /// The world's name in `wit/worlds.wit`.
    pub fn as_str(self) -> &'static str {
        match self {
            World::Aggregator => "aggregator",
            World::Router => "router",
            World::Channel => "channel",
        }
    }

    /// The `tocsin:plugin` interfaces this world may import.
    fn allowed_imports(self) -> &'static [&'static str] {
        match self {
            World::Aggregator => &["types", "log", "state"],
            World::Router => &["types", "log"],
            World::Channel => &["types", "log", "websocket", "email", "http"],
        }
    }
}

impl std::fmt::Display for World {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A pre-linked component of one of the three worlds.
pub enum PluginPre {
    Aggregator(aggregator::AggregatorPre<HostCtx>),
    Router(router::RouterPre<HostCtx>),
    Channel(channel::ChannelPre<HostCtx>),
}

/// A compiled, validated plugin version. Immutable; a reload makes a new one.
pub struct LoadedPlugin {
    /// Name rules refer to it by: the file name without `.wasm`.
    pub name: String,
    pub world: World,
    /// BLAKE3 of the file's bytes, hex.
    pub hash: String,
    pub size: usize,
    /// When this version was loaded, ms since the epoch.
    pub loaded_at: i64,
    /// Whether the compiled artifact came from the cache.
    pub cached: bool,
    /// Time to compile or load the artifact, ms.
    pub compile_ms: f64,
    /// The compiled component (cheap to clone), for inspection.
    pub component: Component,
    pub(crate) pre: PluginPre,
}

/// Why a plugin file was refused.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("not a WebAssembly component: {0}")]
    NotComponent(String),
    #[error("does not compile: {0}")]
    Compile(String),
    #[error("exports none of `aggregate`, `route`, `deliver`: not a tocsin plugin (exports: {0})")]
    NoWorld(String),
    #[error("exports several worlds ({0}); a plugin implements exactly one")]
    SeveralWorlds(String),
    #[error("imports `{import}`, which the {world} world does not offer (allowed: {allowed})")]
    Import {
        import: String,
        world: World,
        allowed: String,
    },
    #[error("does not match the tocsin:plugin@0.1.0 {world} world: {reason}")]
    Link { world: World, reason: String },
}

/// Content hash of plugin bytes, hex BLAKE3.
pub fn content_hash(bytes: &[u8]) -> String {
    blake3::hash(bytes).to_hex().to_string()
}

impl Runtime {
    /// Validates and prepares `bytes` as the plugin `name`.
    pub fn load_plugin(&self, name: &str, bytes: &[u8]) -> Result<LoadedPlugin, LoadError> {
        if bytes.len() < 8 || &bytes[..4] != b"\0asm" {
            return Err(LoadError::NotComponent(format!(
                "{} bytes without the `\\0asm` header (truncated or not wasm)",
                bytes.len()
            )));
        }
        if bytes[4..8] == [1, 0, 0, 0] {
            return Err(LoadError::NotComponent(
                "this is a core module; build for `wasm32-wasip2` so cargo emits a component"
                    .into(),
            ));
        }
        let hash = content_hash(bytes);
        let started = Instant::now();
        let (component, cached) = self.compile_cached(&hash, bytes)?;
        let compile_ms = started.elapsed().as_secs_f64() * 1000.0;

        let world = detect_world(self, &component)?;
        let linker = self.linker_for(world, &component)?;
        let link_err = |e: wasmtime::Error| LoadError::Link {
            world,
            reason: format!("{e:#}"),
        };
        let instance_pre = linker.instantiate_pre(&component).map_err(link_err)?;
        let pre = match world {
            World::Aggregator => PluginPre::Aggregator(
                aggregator::AggregatorPre::new(instance_pre).map_err(link_err)?,
            ),
            World::Router => {
                PluginPre::Router(router::RouterPre::new(instance_pre).map_err(link_err)?)
            }
            World::Channel => {
                PluginPre::Channel(channel::ChannelPre::new(instance_pre).map_err(link_err)?)
            }
        };
        Ok(LoadedPlugin {
            name: name.to_string(),
            world,
            hash,
            size: bytes.len(),
            loaded_at: crate::event::now_ms(),
            cached,
            compile_ms,
            component,
            pre,
        })
    }

    /// Where the compiled artifact of content `hash` is cached, if caching.
    fn artifact_path(&self, hash: &str) -> Option<std::path::PathBuf> {
        self.inner.cache_dir.as_ref().map(|dir| {
            let mut h = std::collections::hash_map::DefaultHasher::new();
            self.inner
                .engine
                .precompile_compatibility_hash()
                .hash(&mut h);
            dir.join(format!("{hash}-{:016x}.cwasm", h.finish()))
        })
    }

    /// Whether a compiled artifact of content `hash` is in the cache (so
    /// loading it takes milliseconds, not a compile).
    pub fn is_compiled(&self, hash: &str) -> bool {
        self.artifact_path(hash).is_some_and(|p| p.is_file())
    }

    /// Compiles `bytes`, or loads the artifact compiled earlier for the same
    /// content by the same engine configuration.
    fn compile_cached(&self, hash: &str, bytes: &[u8]) -> Result<(Component, bool), LoadError> {
        let engine = &self.inner.engine;
        let artifact = self.artifact_path(hash);
        if let Some(path) = &artifact {
            if path.exists() {
                // SAFETY: the artifact was written by this program with
                // `Component::serialize` into its own data directory, and its
                // name carries the engine compatibility hash.
                match unsafe { Component::deserialize_file(engine, path) } {
                    Ok(c) => return Ok((c, true)),
                    Err(e) => {
                        tracing::warn!(path = %path.display(), error = %e, "discarding unusable cached artifact");
                        let _ = std::fs::remove_file(path);
                    }
                }
            }
        }
        let component =
            Component::new(engine, bytes).map_err(|e| LoadError::Compile(format!("{e:#}")))?;
        if let Some(path) = &artifact {
            if let Err(e) = write_artifact(path, &component) {
                tracing::warn!(path = %path.display(), error = %e, "could not cache compiled plugin");
            }
        }
        Ok((component, false))
    }

    /// A linker offering exactly `world`'s imports plus the minimal WASI a
    /// Rust guest needs (streams for panic messages, random for hash maps).
    /// Other WASI imports (files, sockets, clocks, environment) are linked
    /// as traps: a guest may import them but can never use them.
    fn linker_for(
        &self,
        world: World,
        component: &Component,
    ) -> Result<Linker<HostCtx>, LoadError> {
        let engine = &self.inner.engine;
        let allowed = world.allowed_imports();
        for (name, _) in component.component_type().imports(engine) {
            let refused = match name.strip_prefix("tocsin:plugin/") {
                Some(rest) => {
                    let iface = rest.split('@').next().unwrap_or(rest);
                    !allowed.contains(&iface)
                }
                None => !name.starts_with("wasi:"),
            };
            if refused {
                return Err(LoadError::Import {
                    import: name.to_string(),
                    world,
                    allowed: allowed.join(", "),
                });
            }
        }
        let mut linker = Linker::<HostCtx>::new(engine);
        let link_err = |e: wasmtime::Error| LoadError::Link {
            world,
            reason: format!("{e:#}"),
        };
        add_minimal_wasi(&mut linker).map_err(link_err)?;
        match world {
            World::Aggregator => {
                aggregator::Aggregator::add_to_linker::<HostCtx, HasSelf<HostCtx>>(
                    &mut linker,
                    |c| c,
                )
            }
            World::Router => {
                router::Router::add_to_linker::<HostCtx, HasSelf<HostCtx>>(&mut linker, |c| c)
            }
            World::Channel => {
                channel::Channel::add_to_linker::<HostCtx, HasSelf<HostCtx>>(&mut linker, |c| c)
            }
        }
        .map_err(link_err)?;
        stub_unprovided_imports(&mut linker, engine, component).map_err(link_err)?;
        Ok(linker)
    }
}

fn write_artifact(path: &Path, component: &Component) -> anyhow::Result<()> {
    let bytes = component
        .serialize()
        .map_err(|e| anyhow::anyhow!("{e:#}"))?;
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

fn detect_world(rt: &Runtime, component: &Component) -> Result<World, LoadError> {
    let mut names = Vec::new();
    let mut worlds = Vec::new();
    for (name, item) in component.component_type().exports(rt.engine()) {
        if let ComponentItem::ComponentFunc(_) = item.ty {
            match name {
                "aggregate" => worlds.push(World::Aggregator),
                "route" => worlds.push(World::Router),
                "deliver" => worlds.push(World::Channel),
                _ => {}
            }
        }
        names.push(name.to_string());
    }
    match worlds.as_slice() {
        [one] => Ok(*one),
        [] => Err(LoadError::NoWorld(if names.is_empty() {
            "nothing".into()
        } else {
            names.join(", ")
        })),
        many => Err(LoadError::SeveralWorlds(
            many.iter()
                .map(|w| w.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        )),
    }
}

/// The WASI interfaces [`add_minimal_wasi`] links (at 0.2.12), by name
/// without version.
const PROVIDED_WASI: &[&str] = &[
    "wasi:io/error",
    "wasi:io/poll",
    "wasi:io/streams",
    "wasi:cli/exit",
    "wasi:cli/environment",
    "wasi:cli/stdin",
    "wasi:cli/stdout",
    "wasi:cli/stderr",
    "wasi:cli/terminal-input",
    "wasi:cli/terminal-output",
    "wasi:cli/terminal-stdin",
    "wasi:cli/terminal-stdout",
    "wasi:cli/terminal-stderr",
    "wasi:random/random",
    "wasi:random/insecure",
    "wasi:random/insecure-seed",
    "wasi:clocks/wall-clock",
    "wasi:clocks/monotonic-clock",
];

/// Whether the import `name` (`wasi:cli/environment@0.2.6`) is served by
/// a linked WASI interface: the same interface at any 0.2.x version,
/// which the linker's semver matching resolves to the 0.2.12 one.
pub(crate) fn provided_wasi(name: &str) -> bool {
    let (iface, version) = name.split_once('@').unwrap_or((name, ""));
    PROVIDED_WASI.contains(&iface) && (version.is_empty() || version.starts_with("0.2."))
}

/// Links every import nothing provides as a trap, so a guest may import
/// files, sockets or clocks but can never use them.
///
/// Why not `Linker::define_unknown_imports_as_traps`: it looks imports up
/// by their exact name, so a guest importing `wasi:cli/environment@0.2.6`
/// (rustc 1.95; componentize-py imports 0.2.9) got trap stubs under that
/// name, shadowing the compatible 0.2.12 functions linked above: `std`'s
/// `HashMap` (random seed) and panic messages (environment) trapped.
fn stub_unprovided_imports(
    linker: &mut Linker<HostCtx>,
    engine: &wasmtime::Engine,
    component: &Component,
) -> wasmtime::Result<()> {
    for (name, item) in component.component_type().imports(engine) {
        if provided_wasi(name) || name.starts_with("tocsin:plugin/") {
            continue;
        }
        let ComponentItem::ComponentInstance(instance) = item.ty else {
            continue;
        };
        let mut stubs = linker.instance(name)?;
        for (export, item) in instance.exports(engine) {
            match item.ty {
                ComponentItem::ComponentFunc(_) => {
                    let what = format!("{name}#{export}");
                    stubs.func_new(export, move |_, _, _, _| {
                        wasmtime::bail!("plugins get no `{what}` (no ambient WASI access)")
                    })?;
                }
                ComponentItem::Resource(_) => {
                    stubs.resource(export, stub_resource(export), |_, _| Ok(()))?;
                }
                _ => {}
            }
        }
    }
    Ok(())
}

/// The resource type a stubbed interface exports under `name`. The
/// `wasi:io` resources other interfaces re-export (`use wasi:io/poll.
/// {pollable}` in `wasi:clocks/monotonic-clock`, streams in
/// `wasi:sockets` and `wasi:filesystem`) must be the host's own types, or
/// the component is refused with "mismatched resource types" (what
/// `jco`'s and Rust's `std::net` components hit). Every other stubbed
/// resource is one opaque host type: no stub ever creates one.
fn stub_resource(name: &str) -> wasmtime::component::ResourceType {
    use wasmtime::component::ResourceType;
    use wasmtime_wasi_io::{poll, streams};
    match name {
        "pollable" => ResourceType::host::<poll::DynPollable>(),
        "input-stream" => ResourceType::host::<streams::DynInputStream>(),
        "output-stream" => ResourceType::host::<streams::DynOutputStream>(),
        "error" => ResourceType::host::<streams::Error>(),
        _ => ResourceType::host::<()>(),
    }
}

/// WASI pieces a wit-bindgen Rust guest imports even when it does no I/O.
fn add_minimal_wasi(linker: &mut Linker<HostCtx>) -> wasmtime::Result<()> {
    use wasmtime_wasi::cli::{WasiCli, WasiCliView};
    use wasmtime_wasi::p2::bindings::{cli, random};
    use wasmtime_wasi::random::{WasiRandom, WasiRandomView};

    struct HasTable;
    impl wasmtime::component::HasData for HasTable {
        type Data<'a> = &'a mut wasmtime::component::ResourceTable;
    }
    fn table(c: &mut HostCtx) -> &mut wasmtime::component::ResourceTable {
        &mut c.table
    }
    let l = linker;
    wasmtime_wasi_io::bindings::wasi::io::error::add_to_linker::<HostCtx, HasTable>(l, table)?;
    wasmtime_wasi_io::bindings::wasi::io::poll::add_to_linker::<HostCtx, HasTable>(l, table)?;
    wasmtime_wasi_io::bindings::wasi::io::streams::add_to_linker::<HostCtx, HasTable>(l, table)?;
    cli::exit::add_to_linker::<HostCtx, WasiCli>(l, HostCtx::cli)?;
    cli::environment::add_to_linker::<HostCtx, WasiCli>(l, HostCtx::cli)?;
    cli::stdin::add_to_linker::<HostCtx, WasiCli>(l, HostCtx::cli)?;
    cli::stdout::add_to_linker::<HostCtx, WasiCli>(l, HostCtx::cli)?;
    cli::stderr::add_to_linker::<HostCtx, WasiCli>(l, HostCtx::cli)?;
    cli::terminal_input::add_to_linker::<HostCtx, WasiCli>(l, HostCtx::cli)?;
    cli::terminal_output::add_to_linker::<HostCtx, WasiCli>(l, HostCtx::cli)?;
    cli::terminal_stdin::add_to_linker::<HostCtx, WasiCli>(l, HostCtx::cli)?;
    cli::terminal_stdout::add_to_linker::<HostCtx, WasiCli>(l, HostCtx::cli)?;
    cli::terminal_stderr::add_to_linker::<HostCtx, WasiCli>(l, HostCtx::cli)?;
    random::random::add_to_linker::<HostCtx, WasiRandom>(l, HostCtx::random)?;
    random::insecure::add_to_linker::<HostCtx, WasiRandom>(l, HostCtx::random)?;
    random::insecure_seed::add_to_linker::<HostCtx, WasiRandom>(l, HostCtx::random)?;
    add_clocks(l)?;
    Ok(())
}

/// The clocks a plugin may read: the wall clock and the monotonic clock's
/// `now` and `resolution`. Why: JavaScript and Python runtimes read them
/// at start-up (`Date.now`, `performance.now`, `time`), and reading the
/// time reveals nothing the event does not. What a plugin may not do is
/// wait: `subscribe-duration` and `subscribe-instant` trap, because a
/// guest blocked in a host call is outside its CPU deadline and would hold
/// a pipeline worker for as long as it liked.
fn add_clocks(l: &mut Linker<HostCtx>) -> wasmtime::Result<()> {
    use wasmtime::component::ResourceType;
    use wasmtime_wasi::clocks::{WasiClocks, WasiClocksView};
    use wasmtime_wasi::p2::bindings::clocks;
    clocks::wall_clock::add_to_linker::<HostCtx, WasiClocks>(l, HostCtx::clocks)?;
    let started = std::time::Instant::now();
    let mut mono = l.instance("wasi:clocks/monotonic-clock@0.2.12")?;
    mono.resource(
        "pollable",
        ResourceType::host::<wasmtime_wasi_io::poll::DynPollable>(),
        |_, _| Ok(()),
    )?;
    mono.func_wrap("now", move |_, (): ()| {
        Ok((u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX),))
    })?;
    mono.func_wrap("resolution", |_, (): ()| Ok((1u64,)))?;
    for wait in ["subscribe-duration", "subscribe-instant"] {
        mono.func_wrap(wait, move |_, (_,): (u64,)| -> wasmtime::Result<(wasmtime::component::Resource<wasmtime_wasi_io::poll::DynPollable>,)> {
            wasmtime::bail!("plugins may not wait (`wasi:clocks/monotonic-clock#{wait}`): a call must finish within its deadline")
        })?;
    }
    Ok(())
}
