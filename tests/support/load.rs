//! CPU load beside a test: incidents make machines busy, so the exactness
//! and delivery tests also run with every core kept busy by low-priority
//! spinning processes (the house rule "correct on a busy machine").

use std::process::{Child, Command, Stdio};

use anyhow::{Context, Result};

/// One spinning `sh` loop per core at `nice 10`, killed on drop.
pub struct CpuHog {
    children: Vec<Child>,
}

impl CpuHog {
    /// Starts one busy process per available core.
    pub fn start() -> Result<Self> {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let mut children = Vec::with_capacity(cores);
        // Spins, and exits once this test process is gone (a killed test
        // never runs `Drop`, and a leftover hog would load later runs).
        let script = format!(
            "i=0; while :; do i=$((i+1)); if [ $i -ge 100000 ]; then kill -0 {} 2>/dev/null || exit 0; i=0; fi; done",
            std::process::id()
        );
        for _ in 0..cores {
            let child = Command::new("nice")
                .args(["-n", "10", "sh", "-c", &script])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .context("starting a CPU hog (nice sh)")?;
            children.push(child);
        }
        Ok(Self { children })
    }

    /// Whether every hog is still spinning (a test that ran "under load"
    /// must have had the load).
    pub fn running(&mut self) -> bool {
        self.children
            .iter_mut()
            .all(|c| matches!(c.try_wait(), Ok(None)))
    }
}

impl Drop for CpuHog {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
