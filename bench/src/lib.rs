//! The benchmark suite's shared code.
//!
//! Two binaries use it: `tocsin-bench`, the runner that starts a fresh
//! server per run and writes `BENCHMARKS.md`, and `tocsin-loadgen`, the load
//! generator (and webhook receiver). The generator is a separate process so
//! that its CPU time is accounted apart from the server's: on a small
//! machine the generator, or a neighbour, can be the real limit, and every
//! figure says how much CPU each side used.

pub mod amqp;
pub mod clock;
pub mod cpu;
pub mod fig_alertmanager;
pub mod fig_amqp;
pub mod fig_cluster;
pub mod fig_delivery;
pub mod fig_hostile;
pub mod fig_http;
pub mod fig_memory;
pub mod fig_reload;
pub mod http;
pub mod load;
pub mod payload;
pub mod receiver;
pub mod report;
pub mod servers;
pub mod stats;
