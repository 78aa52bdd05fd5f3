//! `tocsin plugin check FILE`: the loader's verdict on one file, with its
//! world, exports and imports, in the words of [`crate::plugin::inspect`].

use std::path::PathBuf;

use clap::Args;

use super::{read_wasm, scratch_runtime, SandboxArgs, Scratch, WorldArg};
use crate::plugin::inspect::{inspect, ImportStatus};

/// Arguments of `tocsin plugin check`.
#[derive(Args, Debug)]
pub struct CheckArgs {
    /// The .wasm file.
    pub file: PathBuf,
    /// The world the plugin must implement (as a rule's stage would need).
    #[arg(long, value_enum)]
    pub world: Option<WorldArg>,
    /// Print the findings as JSON.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub sandbox: SandboxArgs,
}

/// Prints the findings; 0 when the engine would load the file, 1 if not.
pub fn run(args: CheckArgs) -> anyhow::Result<i32> {
    let bytes = read_wasm(&args.file)?;
    let scratch = Scratch::new()?;
    let rt = scratch_runtime(&args.sandbox, &scratch.0)?;
    let found = inspect(&rt, &bytes, args.world.map(Into::into));
    let file = args.file.display();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&found)?);
    } else {
        if let Some(world) = found.world {
            let article = crate::plugin::inspect::article(world);
            println!("{file}: {article} {world} component");
        }
        if !found.exports.is_empty() {
            println!("  exports: {}", found.exports.join(", "));
        }
        for import in &found.imports {
            match &import.status {
                ImportStatus::Served => println!("  import   {}", import.name),
                ImportStatus::Stubbed(note) => println!("  note     {note}"),
            }
        }
    }
    match &found.error {
        Some(e) => {
            eprintln!("error: {file}: {e}");
            Ok(1)
        }
        None => {
            if !args.json {
                println!("ok: the engine loads it");
            }
            Ok(0)
        }
    }
}
