//! `stitch-bridge auth ACCOUNT`: the one-time OAuth code exchange.
//!
//! Every authorisation makes Stitch create a new custom channel and warehouse, so this refuses
//! when a token already exists unless the operator says, in so many words, that they want that.

use super::Cli;
use crate::config::TokenSource;
use crate::engine::exit;
use crate::stitch::wire;

#[derive(clap::Args, Debug)]
pub struct AuthArgs {
    /// The account to authorise (its config must use `token_file`).
    pub account: String,
    /// OAuth client id of this integration.
    #[arg(long, env = "STITCH_CLIENT_ID")]
    pub client_id: String,
    /// OAuth client secret (read from the environment; never pass it on the command line).
    #[arg(long, env = "STITCH_CLIENT_SECRET", hide_env_values = true)]
    pub client_secret: String,
    /// Redirect URI registered for the client.
    #[arg(long)]
    pub redirect_uri: String,
    /// The `code` from the redirect after logging in. Without it, the URL to open is printed.
    #[arg(long)]
    pub code: Option<String>,
    /// Authorise although a token exists. Stitch will create another channel warehouse.
    #[arg(long = "i-understand-this-creates-a-new-channel-warehouse")]
    pub force: bool,
}

pub fn run(cli: &Cli, args: &AuthArgs) -> i32 {
    let config = match super::load_config(&cli.config) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let acct = match super::find_account(&config, &args.account) {
        Ok(a) => a,
        Err(code) => return code,
    };
    let TokenSource::File(token_path) = &acct.token else {
        eprintln!("error: account {} reads its token from the environment; set token_file in the config so `auth` can store the token", acct.name);
        return exit::USAGE;
    };
    if token_path.exists() && !args.force {
        eprintln!(
            "refusing: account {} already has a token ({}).\n\
             Each authorisation makes Stitch create a NEW custom channel and warehouse; re-authorising duplicates them.\n\
             If the token stopped working, contact Stitch support instead. If you really want a new channel warehouse,\n\
             re-run with --i-understand-this-creates-a-new-channel-warehouse",
            acct.name,
            token_path.display()
        );
        return exit::USAGE;
    }
    let Some(code) = &args.code else {
        let mut url = match reqwest::Url::parse(&format!("{}{}", acct.stitch_url, wire::AUTHORIZE)) {
            Ok(u) => u,
            Err(e) => {
                eprintln!("error: {e}");
                return exit::USAGE;
            }
        };
        url.query_pairs_mut()
            .append_pair("response_type", "code")
            .append_pair("client_id", &args.client_id)
            .append_pair("redirect_uri", &args.redirect_uri)
            .append_pair("state", &format!("{:016x}", rand::random::<u64>()));
        outln!(
            "Open this URL, log in with the Stitch subdomain, username and password, then re-run with --code:\n{url}"
        );
        return exit::OK;
    };
    let form = wire::TokenRequest {
        grant_type: "authorization_code".into(),
        code: code.clone(),
        client_id: args.client_id.clone(),
        client_secret: args.client_secret.clone(),
        redirect_uri: args.redirect_uri.clone(),
    };
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: {e}");
            return exit::USAGE;
        }
    };
    let answer: Result<wire::TokenResponse, ExchangeError> = rt.block_on(async {
        let resp =
            reqwest::Client::new().post(format!("{}{}", acct.stitch_url, wire::OAUTH_TOKEN)).form(&form).send().await?;
        let status = resp.status();
        let body = resp.bytes().await?;
        if !status.is_success() {
            let body = String::from_utf8_lossy(&body).chars().take(300).collect();
            return Err(ExchangeError::Refused { status, body });
        }
        Ok(serde_json::from_slice(&body)?)
    });
    let token = match answer {
        Ok(t) => t.access_token,
        Err(e) => {
            eprintln!("error: the code exchange failed: {e}");
            return exit::USAGE;
        }
    };
    if let Some(dir) = token_path.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    let written = super::write_private(token_path, token.as_bytes(), 0o600);
    if let Err(e) = written {
        eprintln!("error: cannot store the token in {}: {e}", token_path.display());
        return exit::USAGE;
    }
    outln!("token stored in {} (mode 0600); run `stitch-bridge test {}`", token_path.display(), acct.name);
    exit::OK
}

/// Why the authorisation code could not be exchanged for a token.
#[derive(Debug, thiserror::Error)]
enum ExchangeError {
    #[error("{0}")]
    Http(#[from] reqwest::Error),
    /// Stitch's answer, cut to 300 characters.
    #[error("{status}: {body}")]
    Refused { status: reqwest::StatusCode, body: String },
    #[error("{0}")]
    Json(#[from] serde_json::Error),
}
