//! The external services the test suite talks to: RabbitMQ and Redis on
//! 127.0.0.1. Started if they are not running; a loud failure if they
//! cannot be reached — tests never silently skip them.

use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};

struct Service {
    name: &'static str,
    addr: &'static str,
    start: &'static [&'static str],
}

const SERVICES: &[Service] = &[
    Service {
        name: "RabbitMQ",
        addr: "127.0.0.1:5672",
        start: &["rabbitmq-server", "-detached"],
    },
    Service {
        name: "Redis",
        addr: "127.0.0.1:6379",
        start: &[
            "redis-server",
            "--daemonize",
            "yes",
            "--bind",
            "127.0.0.1",
            "--port",
            "6379",
            "--save",
            "",
            "--appendonly",
            "no",
        ],
    },
];

fn reachable(addr: &str) -> bool {
    addr.parse::<SocketAddr>()
        .ok()
        .and_then(|a| TcpStream::connect_timeout(&a, Duration::from_millis(500)).ok())
        .is_some()
}

/// The SMTP server the delivery tests run: Debian's python3-aiosmtpd.
fn ensure_smtp_sink() -> Result<()> {
    let importable = |py: &str| {
        Command::new(py)
            .args(["-c", "import aiosmtpd"])
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    };
    if importable("/usr/bin/python3") {
        return Ok(());
    }
    eprintln!("xtask: installing python3-aiosmtpd (the tests' SMTP server)");
    let mut ok = Command::new("apt-get")
        .args(["install", "-y", "python3-aiosmtpd"])
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !ok {
        let _ = Command::new("apt-get").arg("update").status();
        ok = Command::new("apt-get")
            .args(["install", "-y", "python3-aiosmtpd"])
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
    }
    if !ok || !importable("/usr/bin/python3") {
        bail!(
            "python3-aiosmtpd could not be installed; the delivery tests need a real SMTP server"
        );
    }
    Ok(())
}

/// Makes sure every service answers on its port, starting it if needed,
/// and that the SMTP server the tests start is installed.
pub fn ensure() -> Result<()> {
    ensure_smtp_sink()?;
    for s in SERVICES {
        if reachable(s.addr) {
            eprintln!("xtask: {} is up on {}", s.name, s.addr);
            continue;
        }
        eprintln!(
            "xtask: {} not reachable on {}; starting: {}",
            s.name,
            s.addr,
            s.start.join(" ")
        );
        if let Err(e) = Command::new(s.start[0]).args(&s.start[1..]).status() {
            bail!(
                "{} is not running on {} and `{}` could not be started: {e}",
                s.name,
                s.addr,
                s.start[0]
            );
        }
        let deadline = Instant::now() + Duration::from_secs(90);
        while !reachable(s.addr) {
            if Instant::now() > deadline {
                bail!("{} did not come up on {} within 90 s", s.name, s.addr);
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        eprintln!("xtask: {} is up on {}", s.name, s.addr);
    }
    Ok(())
}
