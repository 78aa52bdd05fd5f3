//! What a `.wasm` file is, in a plugin author's words: its world, exports
//! and imports, and for every import whether the host serves it, stubs it
//! (the call traps: no ambient access) or refuses the file for it.
//!
//! Why one module: `tocsin plugin check`, `tocsin check` and `/v1/plugins`
//! must say the same thing about the same file; the loader decides, this
//! explains.

use serde::Serialize;
use wasmtime::component::types::ComponentItem;
use wasmtime::component::Component;

use super::loader::{provided_wasi, LoadError, World};
use super::Runtime;

/// How the host answers one import.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase", tag = "status", content = "note")]
pub enum ImportStatus {
    /// Linked to a host function.
    Served,
    /// Linked to a stub that traps when called, with why.
    Stubbed(String),
}

/// One import of a component.
#[derive(Clone, Debug, Serialize)]
pub struct Import {
    pub name: String,
    #[serde(flatten)]
    pub status: ImportStatus,
}

/// What [`inspect`] found.
#[derive(Debug, Serialize)]
pub struct Inspection {
    /// The world, when the file loads as a plugin.
    pub world: Option<World>,
    pub exports: Vec<String>,
    pub imports: Vec<Import>,
    /// Why the file is refused, if it is.
    pub error: Option<String>,
}

/// Inspects `bytes` as a plugin; `expected` is the world the caller wants
/// (a rule's stage), if any.
pub fn inspect(rt: &Runtime, bytes: &[u8], expected: Option<World>) -> Inspection {
    let mut out = Inspection {
        world: None,
        exports: Vec::new(),
        imports: Vec::new(),
        error: None,
    };
    let component = match rt.load_plugin("inspected", bytes) {
        Ok(p) => {
            out.world = Some(p.world);
            if let Some(want) = expected.filter(|w| *w != p.world) {
                out.error = Some(format!(
                    "is {} {} plugin (it exports `{}`), but {} {want} plugin is needed here (exporting `{}`)",
                    article(p.world),
                    p.world,
                    export_of(p.world),
                    article(want),
                    export_of(want)
                ));
            }
            Some(p.component.clone())
        }
        Err(e) => {
            out.error = Some(explain(&e));
            match e {
                // Compiled fine: list what it holds, to show what is wrong.
                LoadError::NoWorld(_)
                | LoadError::SeveralWorlds(_)
                | LoadError::Import { .. }
                | LoadError::Link { .. } => Component::new(rt.engine(), bytes).ok(),
                LoadError::NotComponent(_) | LoadError::Compile(_) => None,
            }
        }
    };
    if let Some(component) = component {
        out.exports = component
            .component_type()
            .exports(rt.engine())
            .map(|(n, _)| n.to_string())
            .collect();
        out.imports = imports_of(rt, &component);
    }
    out
}

/// The instance imports of `component`, each with how the host answers it.
pub fn imports_of(rt: &Runtime, component: &Component) -> Vec<Import> {
    component
        .component_type()
        .imports(rt.engine())
        .filter(|(_, item)| matches!(item.ty, ComponentItem::ComponentInstance(_)))
        .map(|(name, _)| Import {
            name: name.to_string(),
            status: status_of(name),
        })
        .collect()
}

/// "an aggregator", "a router", "a channel".
pub fn article(world: World) -> &'static str {
    match world {
        World::Aggregator => "an",
        World::Router | World::Channel => "a",
    }
}

/// The function a world's plugin exports.
pub fn export_of(world: World) -> &'static str {
    match world {
        World::Aggregator => "aggregate",
        World::Router => "route",
        World::Channel => "deliver",
    }
}

/// A load error with what to do about it.
fn explain(e: &LoadError) -> String {
    match e {
        LoadError::NoWorld(_) => format!(
            "{e}; a plugin implements one world of wit/worlds.wit (aggregator, router or channel)"
        ),
        other => other.to_string(),
    }
}

/// How the host answers the import `name`.
fn status_of(name: &str) -> ImportStatus {
    if name.starts_with("tocsin:plugin/") || provided_wasi(name) {
        return ImportStatus::Served;
    }
    let iface = name.split('@').next().unwrap_or(name);
    let why = match iface.split('/').next().unwrap_or(iface) {
        "wasi:sockets" => "plugins get no sockets (deliveries go through the http, email and websocket capabilities)",
        "wasi:filesystem" => "plugins get no files (keep data in the state capability)",
        "wasi:http" => "plugins make no HTTP calls themselves (queue one with the http capability)",
        _ => "tocsin does not provide it",
    };
    ImportStatus::Stubbed(format!("imports {name}: {why}; calling it traps"))
}
