//! Plain Rust types for what the host's capabilities take and return, the
//! same in every world (each world's generated bindings have their own).

/// A log line's level.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
}

/// What `state::window_add` did (see `window-hit` in `wit/state.wit`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WindowHit {
    /// Count in the window before this add (0 for a fresh window).
    pub before: u64,
    /// How many times this add made the count reach the threshold.
    pub fires: u32,
    /// Count in the current window after this add (and after resets).
    pub after: u64,
    /// Start of the window the first fire closed, or of the current one.
    pub window_start: i64,
}

/// The native fake's answer is the engine's own (`tocsin-state-ops`).
#[cfg(not(target_arch = "wasm32"))]
impl From<tocsin_state_ops::WindowHit> for WindowHit {
    fn from(h: tocsin_state_ops::WindowHit) -> Self {
        WindowHit {
            before: h.before,
            fires: h.fires,
            after: h.after,
            window_start: h.window_start,
        }
    }
}

/// An email for [`crate::email::send`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EmailMessage {
    /// Recipients, each granted by the rule (see `wit/deliver.wit`).
    pub to: Vec<String>,
    pub subject: String,
    pub text: String,
    pub html: Option<String>,
}

/// An HTTP request for [`crate::http::send`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpRequest {
    pub method: String,
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}
