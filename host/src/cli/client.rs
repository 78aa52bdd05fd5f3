//! What the commands that talk to a running engine share: where it is and
//! the admin token it may ask for.

use clap::Args;

/// `--url` and `--token` of `tocsin dlq` and `tocsin silence`.
#[derive(Args, Debug)]
pub struct EngineArgs {
    /// Engine base URL.
    #[arg(
        long,
        default_value = "http://127.0.0.1:8080",
        env = "TOCSIN_URL",
        global = true
    )]
    pub url: String,
    /// The engine's admin token (`[http] admin_token`), if it has one; for
    /// silences without an admin token, the Alertmanager API's.
    #[arg(
        long,
        env = "TOCSIN_HTTP_ADMIN_TOKEN",
        global = true,
        hide_env_values = true
    )]
    pub token: Option<String>,
}

impl EngineArgs {
    /// The base URL without a trailing slash.
    pub fn base(&self) -> String {
        self.url.trim_end_matches('/').to_string()
    }

    /// `req` with the token, when one is given, and who sends it (the
    /// login name, for the audit log: [`crate::audit`]).
    pub fn auth(&self, req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        let req = match std::env::var("USER").or_else(|_| std::env::var("LOGNAME")) {
            Ok(user) if !user.is_empty() => req.header("x-tocsin-user", user),
            _ => req,
        };
        match &self.token {
            Some(t) if !t.is_empty() => req.bearer_auth(t),
            _ => req,
        }
    }
}
