//! The `tocsin` binary.

use clap::Parser;
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() {
    let cli = tocsin::cli::Cli::parse();
    // The plugin tools print their findings; the log says only what went
    // wrong unless asked (TOCSIN_LOG=info).
    let quiet = matches!(cli.command, tocsin::cli::Command::Plugin(_));
    let default = if quiet { "warn" } else { "info" };
    let filter = EnvFilter::try_from_env("TOCSIN_LOG").unwrap_or_else(|_| EnvFilter::new(default));
    let fmt = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false);
    if quiet {
        // Their stdout is the report (JSON for `plugin test`).
        fmt.with_writer(std::io::stderr).init();
    } else {
        fmt.init();
    }
    match tocsin::cli::main(cli).await {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("tocsin: {e:#}");
            std::process::exit(2);
        }
    }
}
