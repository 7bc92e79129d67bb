//! Configuration: a TOML file with a `[ledger]` table and any number of `[[account]]` entries.
//!
//! The key names are a public contract (users' files must keep working). Unknown keys are an
//! error naming the key and its line (serde's `deny_unknown_fields` + toml's spans), and every
//! value is checked here, at load time, so a cycle never discovers a bad setting halfway. Value
//! errors name their line and column too: after serde has checked the types, the text is parsed
//! once more into toml's spanned document (`Spans`) to find the offending value again.

use serde::Deserialize;
use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("config {path}: {problem}")]
    Invalid { path: PathBuf, problem: ConfigProblem },
}

/// Why a config text was refused and, when the offending value is in the text, where: 1-based
/// line and column, shown with the line and a caret the way toml shows its type errors.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{rendered}")]
pub struct ConfigProblem {
    pub message: String,
    pub line: Option<usize>,
    pub column: Option<usize>,
    rendered: String,
}

impl ConfigProblem {
    fn new(text: &str, message: String, span: Option<Range<usize>>, quote: bool) -> ConfigProblem {
        let Some((line, column, src, width)) = span.and_then(|s| locate(text, s)) else {
            return ConfigProblem { rendered: message.clone(), message, line: None, column: None };
        };
        if !quote {
            let rendered = format!("line {line}, column {column}: {message}");
            return ConfigProblem { message, line: Some(line), column: Some(column), rendered };
        }
        let gutter = " ".repeat(line.to_string().len());
        let rendered = format!(
            "line {line}, column {column}: {message}\n{gutter} |\n{line} | {src}\n{gutter} | {}{}",
            " ".repeat(column - 1),
            "^".repeat(width)
        );
        ConfigProblem { message, line: Some(line), column: Some(column), rendered }
    }
}

/// 1-based line and column (in characters) of a span's start, that line's text, and how many
/// characters of the span lie on it (at least 1).
fn locate(text: &str, span: Range<usize>) -> Option<(usize, usize, &str, usize)> {
    let before = text.get(..span.start)?;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let line_end = text[span.start..].find('\n').map_or(text.len(), |i| span.start + i);
    let src = text[line_start..line_end].trim_end_matches('\r');
    let column = text[line_start..span.start].chars().count() + 1;
    let end = span.end.min(line_start + src.len()).max(span.start);
    let width = text.get(span.start..end).map_or(1, |s| s.chars().count().max(1));
    Some((before.matches('\n').count() + 1, column, src, width))
}

/// A value error found by the checks below, with the span of the value when it is in the text.
struct Fault {
    message: String,
    span: Option<Range<usize>>,
    /// Show the offending line; false when the line holds a secret (a password in a URL).
    quote: bool,
}

impl Fault {
    fn at(message: String, span: Option<Range<usize>>) -> Fault {
        Fault { message, span, quote: true }
    }
}

impl From<String> for Fault {
    fn from(message: String) -> Fault {
        Fault::at(message, None)
    }
}

impl From<&str> for Fault {
    fn from(message: &str) -> Fault {
        message.to_string().into()
    }
}

/// The config text as toml's spanned document, to find where a value that serde accepted sits.
struct Spans<'i>(Option<toml::Spanned<toml::de::DeTable<'i>>>);

impl<'i> Spans<'i> {
    fn new(text: &'i str) -> Spans<'i> {
        Spans(toml::de::DeTable::parse(text).ok())
    }

    fn ledger(&self, key: &str) -> Option<Range<usize>> {
        let ledger = self.0.as_ref()?.get_ref().get("ledger")?;
        Some(ledger.get_ref().get(key)?.span())
    }

    fn ui(&self, key: &str) -> Option<Range<usize>> {
        let ui = self.0.as_ref()?.get_ref().get("ui")?;
        Some(ui.get_ref().get(key)?.span())
    }

    /// The value at `path` (e.g. `["columns", "Item"]`) in the `i`th account; when it is not
    /// in the text (a default), the account's `name`, else the account table.
    fn account(&self, i: usize, path: &[&str]) -> Option<Range<usize>> {
        let acct = self.0.as_ref()?.get_ref().get("account")?.get_ref().get(i)?;
        let found = if path.is_empty() { None } else { path.iter().try_fold(acct, |v, k| v.get_ref().get(*k)) };
        Some(found.or_else(|| acct.get_ref().get("name")).unwrap_or(acct).span())
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    ledger: RawLedger,
    #[serde(default, rename = "account")]
    accounts: Vec<RawAccount>,
    #[serde(default)]
    ui: RawUi,
}

/// `[ui]`: the operator console (`stitch-bridge ui`, `watch --ui-listen`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUi {
    token_env: Option<String>,
    token_label: Option<String>,
}

/// `[ui]`, checked. The token itself is read from `token_env` when the console starts, never
/// stored in the config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UiSettings {
    /// The environment variable holding the console token; `None`: actions are refused.
    pub token_env: Option<String>,
    /// Who the token is, recorded with each console action.
    pub token_label: String,
}

impl Default for UiSettings {
    fn default() -> Self {
        UiSettings { token_env: None, token_label: "console".into() }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLedger {
    path: Option<String>,
    url: Option<String>,
    password_env: Option<String>,
    sslmode: Option<String>,
    ssl_ca_file: Option<String>,
    lease_seconds: Option<u64>,
    max_connections: Option<usize>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAccount {
    name: String,
    drop: String,
    stitch_url: String,
    token_env: Option<String>,
    token_file: Option<String>,
    #[serde(default = "default_settle")]
    settle_seconds: u64,
    // sFTP
    sftp_key_file: Option<String>,
    sftp_password_env: Option<String>,
    sftp_key_passphrase_env: Option<String>,
    known_hosts: Option<String>,
    #[serde(default)]
    sftp_allow_legacy_ssh_rsa: bool,
    #[serde(default = "default_sessions")]
    sftp_max_sessions: usize,
    marker_suffixes: Option<Vec<String>>,
    /// Octal mode of the files the bridge writes into the drop, e.g. "0640".
    file_mode: Option<String>,
    // Schedules
    #[serde(default = "default_poll")]
    poll_seconds: u64,
    #[serde(default = "default_download")]
    download_interval_seconds: u64,
    // Stitch client
    #[serde(default = "default_concurrency")]
    concurrency: usize,
    requests_per_second: Option<u32>,
    #[serde(default = "default_timeout")]
    timeout_seconds: u64,
    #[serde(default = "default_retries")]
    max_retries: u32,
    #[serde(default = "default_backoff_ms")]
    backoff_ms: u64,
    #[serde(default = "default_max_response_bytes")]
    max_response_bytes: u64,
    #[serde(default = "default_max_retry_wait")]
    max_retry_wait_seconds: u64,
    #[serde(default = "default_max_cycle")]
    max_cycle_seconds: u64,
    // Policies
    #[serde(default)]
    inventory_mode: InventoryMode,
    #[serde(default)]
    skip_identical: SkipIdentical,
    #[serde(default)]
    zero_missing: bool,
    #[serde(default = "default_zero_share")]
    zero_missing_max_share: f64,
    // Partner file conventions
    #[serde(default = "default_delimiter")]
    delimiter: String,
    date_format: Option<String>,
    #[serde(default = "default_tz")]
    timezone: String,
    #[serde(default)]
    columns: BTreeMap<String, String>,
    #[serde(default)]
    folders: Folders,
    // Limits
    #[serde(default = "default_max_file_bytes")]
    max_file_bytes: u64,
    #[serde(default = "default_max_rows")]
    max_rows: u64,
    #[serde(default = "default_max_field_len")]
    max_field_len: usize,
    #[serde(default = "default_max_rows_per_order")]
    max_rows_per_order: usize,
    // Alerts
    alert_command: Option<String>,
    alert_url: Option<String>,
    #[serde(default = "default_alert_timeout")]
    alert_timeout_seconds: u64,
    /// `[account.x12]`: the account's X12 trading partner; absent means CSV only.
    x12: Option<RawX12>,
    // OpenPGP (issue: encrypted files on the drop)
    pgp_secret_key_file: Option<String>,
    pgp_passphrase_env: Option<String>,
    pgp_partner_public_key_file: Option<String>,
    #[serde(default)]
    pgp_require_signature: bool,
    #[serde(default)]
    pgp_encrypt_outbound: bool,
    #[serde(default)]
    pgp_encrypt_results: bool,
    #[serde(default)]
    pgp_sign_outbound: bool,
}

/// `[account.x12]`, as written; [`check_x12`] turns it into an [`X12Config`].
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawX12 {
    interchange_id: String,
    #[serde(default = "default_qualifier")]
    interchange_qualifier: String,
    partner_interchange_id: String,
    #[serde(default = "default_qualifier")]
    partner_interchange_qualifier: String,
    application_id: Option<String>,
    partner_application_id: Option<String>,
    #[serde(default)]
    version: crate::x12::Version,
    #[serde(default)]
    usage: Usage,
    #[serde(default)]
    orders_as: OrdersAs,
    #[serde(default = "default_ack_hours")]
    ack_hours: u64,
}

fn default_qualifier() -> String {
    "ZZ".into()
}
fn default_ack_hours() -> u64 {
    24
}

fn default_settle() -> u64 {
    10
}
fn default_sessions() -> usize {
    1
}
fn default_poll() -> u64 {
    60
}
fn default_download() -> u64 {
    300
}
fn default_concurrency() -> usize {
    8
}
fn default_timeout() -> u64 {
    30
}
fn default_alert_timeout() -> u64 {
    30
}
fn default_retries() -> u32 {
    5
}
fn default_backoff_ms() -> u64 {
    200
}
fn default_max_response_bytes() -> u64 {
    16 * 1024 * 1024
}
fn default_max_retry_wait() -> u64 {
    120
}
fn default_max_cycle() -> u64 {
    3600
}
fn default_zero_share() -> f64 {
    0.2
}
fn default_delimiter() -> String {
    ",".into()
}
fn default_tz() -> String {
    "UTC".into()
}
fn default_max_file_bytes() -> u64 {
    512 * 1024 * 1024
}
fn default_max_rows() -> u64 {
    5_000_000
}
fn default_max_field_len() -> usize {
    4096
}
fn default_max_rows_per_order() -> usize {
    1000
}

/// Snapshot: `quantity` is the on-hand count. Delta: `quantity` is a signed adjustment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InventoryMode {
    #[default]
    Snapshot,
    Delta,
}

/// Which earlier file makes a file "the same file sent again", skipped with a result naming it.
/// A duplicate is the same name and the same content: a later snapshot identical to an older one
/// (Monday 50, Tuesday 60, Wednesday 50 again) is new information, and so is a second receipt of
/// the same quantity under another name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SkipIdentical {
    /// Same name and same content (the default).
    #[default]
    SameName,
    /// Same content under any name (for partners who resend under new names by mistake).
    AnyName,
    /// Process every file.
    Never,
}

/// ISA15: whether the partner treats our interchanges as production or test data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
pub enum Usage {
    #[default]
    #[serde(rename = "P")]
    Production,
    #[serde(rename = "T")]
    Test,
}

impl Usage {
    /// ISA15.
    pub fn isa15(self) -> &'static str {
        match self {
            Usage::Production => "P",
            Usage::Test => "T",
        }
    }
}

/// How outbound orders (and their cancellations) go to an X12 partner: the CSV files as before,
/// or 940s.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OrdersAs {
    #[default]
    Csv,
    X12,
}

/// `[account.x12]`: the envelope ids of both sides and what we send. Checked at load: ids fit
/// their ISA/GS fields and contain nothing a separator could be mistaken for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct X12Config {
    /// ISA05.
    pub interchange_qualifier: String,
    /// ISA06, unpadded.
    pub interchange_id: String,
    /// ISA07.
    pub partner_interchange_qualifier: String,
    /// ISA08, unpadded.
    pub partner_interchange_id: String,
    /// GS02 (defaults to the interchange id).
    pub application_id: String,
    /// GS03 (defaults to the partner's interchange id).
    pub partner_application_id: String,
    /// The version we write (GS08/ISA12); acks answer in the partner's.
    pub version: crate::x12::Version,
    pub usage: Usage,
    pub orders_as: OrdersAs,
    /// `ack_hours`: a 940 with no 997 after this long needs a person.
    pub ack_timeout: Duration,
}

impl X12Config {
    /// Our side of the envelope.
    pub fn us(&self) -> crate::x12::Party {
        crate::x12::Party {
            qualifier: self.interchange_qualifier.clone(),
            id: self.interchange_id.clone(),
            application_id: self.application_id.clone(),
        }
    }

    /// The partner's side of the envelope.
    pub fn partner(&self) -> crate::x12::Party {
        crate::x12::Party {
            qualifier: self.partner_interchange_qualifier.clone(),
            id: self.partner_interchange_id.clone(),
            application_id: self.partner_application_id.clone(),
        }
    }

    /// The ledger's name for this partner (`QUALIFIER:ID`, e.g. `ZZ:ACMEWH`): control numbers
    /// and seen interchanges are kept per partner, so a changed partner id starts its own series.
    pub fn partner_key(&self) -> String {
        format!("{}:{}", self.partner_interchange_qualifier, self.partner_interchange_id)
    }
}

/// The account's OpenPGP keys, loaded and checked when the configuration is: a wrong
/// passphrase or an unusable key is a configuration error naming the file, not a surprise at
/// the first encrypted upload. The keys print as their ids only (`Debug` is redacted).
#[derive(Debug, Clone)]
pub struct PgpSettings {
    /// Ours: decrypts inbound files and signs outbound ones.
    pub ours: Option<std::sync::Arc<crate::wrap::pgp::OurKey>>,
    /// The partner's: verifies their signatures and encrypts what we send them.
    pub partner: Option<std::sync::Arc<crate::wrap::pgp::PartnerKey>>,
    pub require_signature: bool,
    /// Order, cancel and 997 files.
    pub encrypt_outbound: bool,
    /// Result and error files.
    pub encrypt_results: bool,
    pub sign_outbound: bool,
}

impl PgpSettings {
    /// Decrypt an inbound stream with our key, checking the partner's signature as configured.
    pub fn decrypt<'r>(
        &'r self,
        input: Box<dyn std::io::Read + Send + 'r>,
    ) -> Result<Box<dyn std::io::Read + Send + 'r>, crate::wrap::WrapError> {
        let Some(ours) = self.ours.as_deref() else {
            return Err(no_secret_key("the account has no pgp_secret_key_file to decrypt it"));
        };
        crate::wrap::pgp::decrypt(input, ours, self.partner.as_deref(), self.require_signature)
    }
}

/// An encrypted file where no key of ours is configured: the file's verdict, `why` saying it.
pub fn no_secret_key(why: &str) -> crate::wrap::WrapError {
    crate::wrap::WrapError::PgpWrongKey {
        key_ids: Vec::new(),
        message: format!("the file is OpenPGP-encrypted, but {why}"),
    }
}

/// Folder names under the drop root. Configurable because partners already have conventions.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Folders {
    pub inbound_orders: String,
    pub inbound_inventory: String,
    pub inbound_shipments: String,
    /// X12 interchanges of any set; the transaction sets inside decide the kind.
    pub inbound_edi: String,
    pub outbound_orders: String,
    pub outbound_cancellations: String,
    /// The 997s we send for the partner's interchanges.
    pub outbound_acks: String,
    pub results: String,
    pub errors: String,
    pub archive: String,
    pub rejected: String,
}

impl Default for Folders {
    fn default() -> Self {
        Folders {
            inbound_orders: "inbound/orders".into(),
            inbound_inventory: "inbound/inventory".into(),
            inbound_shipments: "inbound/shipments".into(),
            inbound_edi: "inbound/edi".into(),
            outbound_orders: "outbound/orders".into(),
            outbound_cancellations: "outbound/cancellations".into(),
            outbound_acks: "outbound/acks".into(),
            results: "results".into(),
            errors: "errors".into(),
            archive: "archive".into(),
            rejected: "rejected".into(),
        }
    }
}

impl Folders {
    pub fn inbound(&self, kind: crate::formats::Kind) -> &str {
        use crate::formats::Kind;
        match kind {
            Kind::Inventory => &self.inbound_inventory,
            Kind::Orders => &self.inbound_orders,
            Kind::Shipments => &self.inbound_shipments,
        }
    }

    /// The folders a drop has, in the order they are made: the X12 ones (`inbound_edi`,
    /// `outbound_acks`) only for an account with an X12 partner, so CSV-only drops keep their
    /// layout.
    pub fn layout(&self, x12: bool) -> Vec<&str> {
        let x12_only = |k: &str| matches!(k, "inbound_edi" | "outbound_acks");
        self.all().into_iter().filter(|(k, _)| x12 || !x12_only(k)).map(|(_, v)| v).collect()
    }

    fn all(&self) -> [(&'static str, &str); 11] {
        [
            ("inbound_orders", &self.inbound_orders),
            ("inbound_inventory", &self.inbound_inventory),
            ("inbound_shipments", &self.inbound_shipments),
            ("inbound_edi", &self.inbound_edi),
            ("outbound_orders", &self.outbound_orders),
            ("outbound_cancellations", &self.outbound_cancellations),
            ("outbound_acks", &self.outbound_acks),
            ("results", &self.results),
            ("errors", &self.errors),
            ("archive", &self.archive),
            ("rejected", &self.rejected),
        ]
    }
}

/// Where the drop is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DropLocation {
    Local(PathBuf),
    Sftp { user: String, host: String, port: u16, path: String },
}

/// Where to tell an operator that an account halted or a file was rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AlertHook {
    /// Run through `sh -c`, the alert text on stdin.
    Command(String),
    /// POST JSON `{account, event, text, at}`.
    Url(String),
}

/// How the Stitch token is obtained; the token itself is read only when needed, never logged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenSource {
    Env(String),
    File(PathBuf),
}

#[derive(Debug, Clone)]
pub struct SftpSettings {
    pub key_file: Option<PathBuf>,
    pub password_env: Option<String>,
    pub key_passphrase_env: Option<String>,
    pub known_hosts: PathBuf,
    pub allow_legacy_ssh_rsa: bool,
    /// Concurrent sessions to this server (partner servers fall over under many).
    pub max_sessions: usize,
}

#[derive(Debug, Clone)]
pub struct Account {
    pub name: String,
    pub drop: DropLocation,
    pub sftp: Option<SftpSettings>,
    pub marker_suffixes: Vec<String>,
    /// `file_mode`: exact mode of result, error and outbound files; `None` follows the umask
    /// (local drops: 0666 less the umask; sFTP: 0644, as a umask of 022 would give).
    pub file_mode: Option<u32>,
    pub stitch_url: String,
    pub token: TokenSource,
    pub settle: Duration,
    pub poll_interval: Duration,
    pub download_interval: Duration,
    pub concurrency: usize,
    pub requests_per_second: Option<u32>,
    pub timeout: Duration,
    pub max_retries: u32,
    /// First retry backoff step (doubled per attempt, jittered).
    pub backoff: Duration,
    /// Largest Stitch answer read; a bigger one is cut off at this size and is an error.
    pub max_response_bytes: u64,
    /// Longest wait between attempts, whatever `Retry-After` asks for.
    pub max_retry_wait: Duration,
    /// Budget of one account cycle: no request starts after it, one in flight is cut at it.
    pub max_cycle: Duration,
    pub inventory_mode: InventoryMode,
    pub skip_identical: SkipIdentical,
    pub zero_missing: bool,
    pub zero_missing_max_share: f64,
    pub folders: Folders,
    pub parse: crate::formats::ParseOptions,
    pub alerts: Vec<AlertHook>,
    /// How long an alert command or POST may take before it is abandoned (the command killed).
    pub alert_timeout: Duration,
    /// `[account.x12]`: the X12 trading partner, if the account has one.
    pub x12: Option<X12Config>,
    /// `pgp_*`: OpenPGP keys and policy; `None` when no `pgp_*` key is set.
    pub pgp: Option<PgpSettings>,
}

impl Account {
    /// Every folder the drop of this account has ([`Folders::layout`]).
    pub fn drop_folders(&self) -> Vec<&str> {
        self.folders.layout(self.x12.is_some())
    }
}

#[derive(Debug, Clone)]
pub struct Config {
    /// `[ledger] path` (SQLite, the default) or `url` (PostgreSQL, shared by several workers).
    pub ledger: crate::ledger::LedgerLocation,
    /// `[ledger] lease_seconds`: how long a worker's claim on an account lasts without renewal,
    /// i.e. how soon a dead worker's accounts are taken over.
    pub lease_ttl: Duration,
    /// `[ledger] max_connections`: ledger connections, and so accounts cycled at once, per
    /// process. `None`: every account at once (SQLite's default; PostgreSQL defaults to 16).
    pub max_connections: Option<usize>,
    pub accounts: Vec<Account>,
    /// `[ui]`: the operator console's token variable and label.
    pub ui: UiSettings,
    /// Where the file was read from; relative paths in it resolved against its folder.
    pub source: Option<PathBuf>,
}

impl Config {
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_path_buf(), source })?;
        let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
        let base = if base.as_os_str().is_empty() { PathBuf::from(".") } else { base };
        Self::parse(&text, &base).map_err(|problem| ConfigError::Invalid { path: path.to_path_buf(), problem }).map(
            |mut c| {
                c.source = Some(path.to_path_buf());
                c
            },
        )
    }

    /// Parse and check a config text; relative paths resolve against `base`.
    pub fn parse(text: &str, base: &Path) -> Result<Config, ConfigProblem> {
        let raw: RawConfig = toml::from_str(text)
            .map_err(|e| ConfigProblem::new(text, e.message().trim_end().to_string(), e.span(), true))?;
        let spans = Spans::new(text);
        let checked = (|| {
            let (ledger, lease_ttl, max_connections) = check_ledger(&raw.ledger, base, &spans)?;
            let mut accounts = Vec::new();
            let mut names = std::collections::HashSet::new();
            for (i, a) in raw.accounts.into_iter().enumerate() {
                let acct = check_account(a, i, base, &spans)?;
                if !names.insert(acct.name.clone()) {
                    let message = format!("account name {:?} appears twice", acct.name);
                    return Err(Fault::at(message, spans.account(i, &["name"])));
                }
                accounts.push(acct);
            }
            let ui = check_ui(&raw.ui, &spans)?;
            Ok(Config { ledger, lease_ttl, max_connections, accounts, ui, source: None })
        })();
        checked.map_err(|f: Fault| ConfigProblem::new(text, f.message, f.span, f.quote))
    }

    pub fn account(&self, name: &str) -> Option<&Account> {
        self.accounts.iter().find(|a| a.name == name)
    }
}

fn check_ledger(
    l: &RawLedger,
    base: &Path,
    spans: &Spans,
) -> Result<(crate::ledger::LedgerLocation, Duration, Option<usize>), Fault> {
    use crate::ledger::LedgerLocation;
    let at = |key: &str, message: String| Fault::at(message, spans.ledger(key));
    let location = match (&l.path, &l.url) {
        (Some(_), Some(_)) => {
            return Err(at("url", "[ledger]: set either path (SQLite) or url (PostgreSQL), not both".into()))
        }
        (_, Some(url)) => {
            if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
                return Err(at(
                    "url",
                    format!("[ledger] url {:?} must start with postgres://", crate::ledger::redact_url(url)),
                ));
            }
            if crate::ledger::redact_url(url) != *url {
                let message = "[ledger] url must not contain the password: put it in an environment variable named by password_env";
                return Err(Fault { quote: false, ..at("url", message.into()) });
            }
            let sslmode = match &l.sslmode {
                None => crate::ledger::SslMode::default(),
                Some(m) => crate::ledger::SslMode::parse(m).ok_or_else(|| {
                    at("sslmode", format!("[ledger] sslmode {m:?} must be {}", crate::ledger::SslMode::NAMES))
                })?,
            };
            if l.ssl_ca_file.is_some() && sslmode != crate::ledger::SslMode::VerifyFull {
                let message = format!(
                    "[ledger] ssl_ca_file applies only with sslmode = \"verify-full\" (sslmode is {:?})",
                    sslmode.as_str()
                );
                return Err(at("ssl_ca_file", message));
            }
            let tls = crate::ledger::PgTls { sslmode, ssl_ca_file: l.ssl_ca_file.as_ref().map(|f| base.join(f)) };
            LedgerLocation::Postgres { url: url.clone(), password_env: l.password_env.clone(), tls }
        }
        (path, None) => {
            for (key, set) in [
                ("password_env", l.password_env.is_some()),
                ("sslmode", l.sslmode.is_some()),
                ("ssl_ca_file", l.ssl_ca_file.is_some()),
            ] {
                if set {
                    return Err(at(key, format!("[ledger] {key} applies only with url (PostgreSQL)")));
                }
            }
            LedgerLocation::Sqlite(base.join(path.as_deref().unwrap_or("state/ledger.sqlite")))
        }
    };
    let lease = l.lease_seconds.unwrap_or(60);
    if lease == 0 {
        return Err(at("lease_seconds", "[ledger] lease_seconds must be at least 1".into()));
    }
    if l.max_connections == Some(0) {
        return Err(at("max_connections", "[ledger] max_connections must be at least 1".into()));
    }
    let max_connections = l.max_connections.or(match location {
        LedgerLocation::Postgres { .. } => Some(16),
        LedgerLocation::Sqlite(_) => None,
    });
    Ok((location, Duration::from_secs(lease), max_connections))
}

fn check_ui(u: &RawUi, spans: &Spans) -> Result<UiSettings, Fault> {
    let at = |key: &str, message: String| Fault::at(message, spans.ui(key));
    if let Some(e) = &u.token_env {
        if e.is_empty() || e.contains(['=', '\0']) || e.trim() != e {
            return Err(at(
                "token_env",
                format!("[ui] token_env {e:?} must name an environment variable, e.g. \"STITCH_BRIDGE_UI_TOKEN\""),
            ));
        }
    }
    let token_label = match &u.token_label {
        None => UiSettings::default().token_label,
        Some(l) if l.trim().is_empty() || l.len() > 64 || l.chars().any(char::is_control) => {
            return Err(at(
                "token_label",
                format!("[ui] token_label {l:?} must be 1 to 64 printable characters, e.g. \"ops-team\""),
            ))
        }
        Some(l) => l.clone(),
    };
    Ok(UiSettings { token_env: u.token_env.clone(), token_label })
}

fn check_account(a: RawAccount, index: usize, base: &Path, spans: &Spans) -> Result<Account, Fault> {
    // `key`: where the value is in the text (a path under the account, e.g. ["columns", "Item"]).
    let at = |key: &[&str], m: String| Fault::at(format!("account {:?}: {m}", a.name), spans.account(index, key));
    let ctx = |m: String| at(&[], m);
    if a.name.is_empty() || !a.name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
        let message = format!("account name {:?} must be non-empty and use only letters, digits, '-' and '_'", a.name);
        return Err(Fault::at(message, spans.account(index, &["name"])));
    }
    // An sFTP URL with a password in it is refused; its line is not shown.
    let quote = reqwest::Url::parse(&a.drop).map_or(true, |u| u.password().is_none());
    let drop = parse_drop(&a.drop, base).map_err(|e| Fault { quote, ..at(&["drop"], e.to_string()) })?;
    let token = match (&a.token_env, &a.token_file) {
        (Some(e), None) if e.is_empty() || e.contains(['=', '\0']) || e.trim() != e => {
            return Err(at(
                &["token_env"],
                format!("token_env {e:?} must name an environment variable, e.g. \"STITCH_TOKEN\""),
            ))
        }
        (Some(e), None) => TokenSource::Env(e.clone()),
        (None, Some(f)) if f.trim().is_empty() => {
            return Err(at(&["token_file"], "token_file must name a file, e.g. \"secrets/main.token\"".into()))
        }
        (None, Some(f)) => TokenSource::File(base.join(f)),
        (Some(_), Some(_)) => {
            return Err(at(&["token_file"], "set exactly one of token_env or token_file, not both".into()))
        }
        (None, None) => return Err(ctx("set exactly one of token_env or token_file".into())),
    };
    let url = reqwest::Url::parse(&a.stitch_url)
        .map_err(|e| at(&["stitch_url"], format!("stitch_url {:?}: {e}", a.stitch_url)))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(at(&["stitch_url"], format!("stitch_url {:?} must be http or https", a.stitch_url)));
    }
    let sftp = match &drop {
        DropLocation::Sftp { .. } => {
            if a.sftp_key_file.is_none() && a.sftp_password_env.is_none() {
                return Err(at(&["drop"], "an sftp drop needs sftp_key_file or sftp_password_env".into()));
            }
            let known_hosts = match &a.known_hosts {
                Some(k) => base.join(k),
                None => std::env::var_os("HOME")
                    .map(|h| PathBuf::from(h).join(".ssh/known_hosts"))
                    .ok_or_else(|| ctx("known_hosts not set and HOME unknown".into()))?,
            };
            Some(SftpSettings {
                key_file: a.sftp_key_file.as_ref().map(|k| base.join(k)),
                password_env: a.sftp_password_env.clone(),
                key_passphrase_env: a.sftp_key_passphrase_env.clone(),
                known_hosts,
                allow_legacy_ssh_rsa: a.sftp_allow_legacy_ssh_rsa,
                max_sessions: a.sftp_max_sessions.max(1),
            })
        }
        DropLocation::Local(_) => {
            if a.sftp_key_file.is_some() || a.sftp_password_env.is_some() {
                let key = if a.sftp_key_file.is_some() { "sftp_key_file" } else { "sftp_password_env" };
                return Err(at(&[key], "sftp_* keys are set but the drop is not sftp://".into()));
            }
            None
        }
    };
    if a.concurrency == 0 || a.concurrency > 64 {
        return Err(at(&["concurrency"], format!("concurrency must be 1..=64, got {}", a.concurrency)));
    }
    if a.requests_per_second == Some(0) {
        return Err(at(&["requests_per_second"], "requests_per_second must be > 0 (omit it for no cap)".into()));
    }
    if a.timeout_seconds == 0 {
        return Err(at(&["timeout_seconds"], "timeout_seconds must be > 0".into()));
    }
    if a.max_response_bytes < 1024 {
        return Err(ctx(format!("max_response_bytes must be at least 1024, got {}", a.max_response_bytes)));
    }
    if a.max_cycle_seconds == 0 {
        return Err(ctx("max_cycle_seconds must be > 0".into()));
    }
    if a.poll_seconds == 0 || a.download_interval_seconds == 0 {
        let key = if a.poll_seconds == 0 { "poll_seconds" } else { "download_interval_seconds" };
        return Err(at(&[key], "poll_seconds and download_interval_seconds must be > 0".into()));
    }
    if !(0.0..=1.0).contains(&a.zero_missing_max_share) {
        return Err(at(&["zero_missing_max_share"], "zero_missing_max_share must be between 0 and 1".into()));
    }
    let delimiter = match a.delimiter.as_bytes() {
        [b] if b.is_ascii() && *b != b'"' && *b != b'\n' && *b != b'\r' => *b,
        _ if a.delimiter == "\\t" || a.delimiter == "tab" => b'\t',
        _ => return Err(at(&["delimiter"], format!("delimiter must be one ASCII character, got {:?}", a.delimiter))),
    };
    let timezone: chrono_tz::Tz = a.timezone.parse().map_err(|_| {
        at(&["timezone"], format!("timezone {:?} is not an IANA time zone name (e.g. \"Europe/Berlin\")", a.timezone))
    })?;
    if let Some(f) = &a.date_format {
        if chrono::format::StrftimeItems::new(f).any(|i| matches!(i, chrono::format::Item::Error)) {
            return Err(at(&["date_format"], format!("date_format {f:?} is not a valid strftime format")));
        }
    }
    for (k, v) in a.folders.all() {
        if v.is_empty() || v.starts_with('/') || v.split('/').any(|p| p == ".." || p.is_empty()) {
            return Err(at(&["folders", k], format!("folders.{k} = {v:?} must be a relative path inside the drop")));
        }
    }
    let x12 = a.x12.clone().map(|x| check_x12(x, &at)).transpose()?;
    let pgp = check_pgp(&a, base, &at)?;
    let file_mode = match &a.file_mode {
        None => None,
        Some(m) => Some(parse_file_mode(m).ok_or_else(|| {
            ctx(format!("file_mode {m:?} must be an octal mode between 0000 and 0777, e.g. \"0640\""))
        })?),
    };
    if a.alert_timeout_seconds == 0 {
        return Err(ctx("alert_timeout_seconds must be > 0".into()));
    }
    let mut alerts = Vec::new();
    if let Some(c) = &a.alert_command {
        alerts.push(AlertHook::Command(c.clone()));
    }
    if let Some(u) = &a.alert_url {
        let parsed = reqwest::Url::parse(u).map_err(|e| at(&["alert_url"], format!("alert_url {u:?}: {e}")))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(at(&["alert_url"], format!("alert_url {u:?} must be http or https")));
        }
        alerts.push(AlertHook::Url(u.clone()));
    }
    let mut column_map = std::collections::HashMap::new();
    for (partner, ours) in &a.columns {
        let canonical = known_column(ours).ok_or_else(|| {
            at(
                &["columns", partner],
                format!("columns: {partner:?} = {ours:?}: we have no column {ours:?}; ours are {}", column_list()),
            )
        })?;
        column_map.insert(partner.trim().to_lowercase(), canonical.to_string());
    }
    let parse = crate::formats::ParseOptions {
        delimiter,
        column_map,
        date_format: a.date_format.clone(),
        timezone,
        inventory_delta: a.inventory_mode == InventoryMode::Delta,
        max_file_bytes: a.max_file_bytes,
        max_field_len: a.max_field_len,
        max_rows: a.max_rows,
        max_rows_per_group: a.max_rows_per_order,
    };
    Ok(Account {
        name: a.name,
        drop,
        sftp,
        marker_suffixes: a.marker_suffixes.unwrap_or_default(),
        file_mode,
        stitch_url: a.stitch_url.trim_end_matches('/').to_string(),
        token,
        settle: Duration::from_secs(a.settle_seconds),
        poll_interval: Duration::from_secs(a.poll_seconds),
        download_interval: Duration::from_secs(a.download_interval_seconds),
        concurrency: a.concurrency,
        requests_per_second: a.requests_per_second,
        timeout: Duration::from_secs(a.timeout_seconds),
        max_retries: a.max_retries,
        backoff: Duration::from_millis(a.backoff_ms),
        max_response_bytes: a.max_response_bytes,
        max_retry_wait: Duration::from_secs(a.max_retry_wait_seconds),
        max_cycle: Duration::from_secs(a.max_cycle_seconds),
        inventory_mode: a.inventory_mode,
        skip_identical: a.skip_identical,
        zero_missing: a.zero_missing,
        zero_missing_max_share: a.zero_missing_max_share,
        folders: a.folders,
        parse,
        alerts,
        alert_timeout: Duration::from_secs(a.alert_timeout_seconds),
        x12,
        pgp,
    })
}

/// The `pgp_*` keys: consistent with each other, the key files loaded and usable for what
/// they are asked to do. A passphrase is read from its environment variable here, once.
fn check_pgp(a: &RawAccount, base: &Path, at: &dyn Fn(&[&str], String) -> Fault) -> Result<Option<PgpSettings>, Fault> {
    use crate::wrap::pgp::{OurKey, PartnerKey};
    let any = a.pgp_secret_key_file.is_some()
        || a.pgp_passphrase_env.is_some()
        || a.pgp_partner_public_key_file.is_some()
        || a.pgp_require_signature
        || a.pgp_encrypt_outbound
        || a.pgp_encrypt_results
        || a.pgp_sign_outbound;
    if !any {
        return Ok(None);
    }
    let needs_partner = [
        ("pgp_require_signature", a.pgp_require_signature),
        ("pgp_encrypt_outbound", a.pgp_encrypt_outbound),
        ("pgp_encrypt_results", a.pgp_encrypt_results),
    ];
    for (key, set) in needs_partner {
        if set && a.pgp_partner_public_key_file.is_none() {
            return Err(at(
                &[key],
                format!("{key} = true needs pgp_partner_public_key_file (the partner's public key)"),
            ));
        }
    }
    if a.pgp_sign_outbound && a.pgp_secret_key_file.is_none() {
        let m = "pgp_sign_outbound = true needs pgp_secret_key_file (our key signs)".to_string();
        return Err(at(&["pgp_sign_outbound"], m));
    }
    if a.pgp_sign_outbound && !a.pgp_encrypt_outbound && !a.pgp_encrypt_results {
        let m = "pgp_sign_outbound = true signs what is encrypted: set pgp_encrypt_outbound or pgp_encrypt_results"
            .to_string();
        return Err(at(&["pgp_sign_outbound"], m));
    }
    if a.pgp_passphrase_env.is_some() && a.pgp_secret_key_file.is_none() {
        return Err(at(&["pgp_passphrase_env"], "pgp_passphrase_env applies only with pgp_secret_key_file".into()));
    }
    let passphrase = match &a.pgp_passphrase_env {
        None => None,
        Some(e) if e.is_empty() || e.contains(['=', '\0']) || e.trim() != e => {
            let m = format!("pgp_passphrase_env {e:?} must name an environment variable, e.g. \"PGP_PASSPHRASE\"");
            return Err(at(&["pgp_passphrase_env"], m));
        }
        Some(e) => Some(std::env::var(e).map_err(|_| {
            at(&["pgp_passphrase_env"], format!("pgp_passphrase_env: the environment variable {e} is not set"))
        })?),
    };
    let ours = match &a.pgp_secret_key_file {
        None => None,
        Some(f) => {
            let path = base.join(f);
            let key = OurKey::load(&path, passphrase.as_deref())
                .map_err(|e| at(&["pgp_secret_key_file"], format!("pgp_secret_key_file {}: {e}", path.display())))?;
            Some(std::sync::Arc::new(key))
        }
    };
    let partner = match &a.pgp_partner_public_key_file {
        None => None,
        Some(f) => {
            let path = base.join(f);
            let fault = |e: crate::wrap::pgp::KeyError| {
                at(&["pgp_partner_public_key_file"], format!("pgp_partner_public_key_file {}: {e}", path.display()))
            };
            let key = PartnerKey::load(&path).map_err(fault)?;
            if a.pgp_encrypt_outbound || a.pgp_encrypt_results {
                key.check_can_encrypt().map_err(fault)?;
            }
            Some(std::sync::Arc::new(key))
        }
    };
    Ok(Some(PgpSettings {
        ours,
        partner,
        require_signature: a.pgp_require_signature,
        encrypt_outbound: a.pgp_encrypt_outbound,
        encrypt_results: a.pgp_encrypt_results,
        sign_outbound: a.pgp_sign_outbound,
    }))
}

/// Longest `ack_hours`: a year. Longer is surely a typo, and keeps the cutoff arithmetic in range.
const MAX_ACK_HOURS: u64 = 24 * 366;

/// `[account.x12]`: ids that fit the ISA and GS fields, defaults filled in. `at` locates a key
/// under `x12` (the `x12` table itself when the key is a default).
fn check_x12(x: RawX12, at: &dyn Fn(&[&str], String) -> Fault) -> Result<X12Config, Fault> {
    let key = |k: &'static str| -> [&'static str; 2] { ["x12", k] };
    for (k, v) in [
        ("interchange_qualifier", &x.interchange_qualifier),
        ("partner_interchange_qualifier", &x.partner_interchange_qualifier),
    ] {
        if v.len() != 2 || !v.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit()) {
            return Err(at(
                &key(k),
                format!(
                    "x12.{k} = {v:?} must be 2 capital letters or digits (an ISA05/07 code such as \"ZZ\" or \"01\")"
                ),
            ));
        }
    }
    for (k, v) in [("interchange_id", &x.interchange_id), ("partner_interchange_id", &x.partner_interchange_id)] {
        if let Some(why) = x12_id_problem(v, 1) {
            return Err(at(&key(k), format!("x12.{k} = {v:?} {why}")));
        }
    }
    // A defaulted application id that does not fit GS02/GS03 is located at the id it comes from.
    let app = |given: Option<String>, own: &'static str, from: &'static str, id: &str| {
        let located = if given.is_some() { own } else { from };
        let v = given.unwrap_or_else(|| id.to_string());
        match x12_id_problem(&v, 2) {
            None => Ok(v),
            Some(why) => Err(at(&key(located), format!("x12.{own} = {v:?} {why} (GS02/GS03; it defaults to {from})"))),
        }
    };
    let application_id = app(x.application_id, "application_id", "interchange_id", &x.interchange_id)?;
    let partner_application_id =
        app(x.partner_application_id, "partner_application_id", "partner_interchange_id", &x.partner_interchange_id)?;
    if x.ack_hours == 0 || x.ack_hours > MAX_ACK_HOURS {
        return Err(at(&key("ack_hours"), format!("x12.ack_hours must be 1..={MAX_ACK_HOURS}, got {}", x.ack_hours)));
    }
    Ok(X12Config {
        interchange_qualifier: x.interchange_qualifier,
        interchange_id: x.interchange_id,
        partner_interchange_qualifier: x.partner_interchange_qualifier,
        partner_interchange_id: x.partner_interchange_id,
        application_id,
        partner_application_id,
        version: x.version,
        usage: x.usage,
        orders_as: x.orders_as,
        ack_timeout: Duration::from_secs(x.ack_hours * 3600),
    })
}

/// Why `id` cannot be an ISA06/08 or GS02/03 value: 1 (or `min`) to 15 printable ASCII characters,
/// none of them a space or one of the separators we write (`*`, `>`, `~`, `^`).
fn x12_id_problem(id: &str, min: usize) -> Option<String> {
    let len = id.chars().count();
    if len < min || len > 15 {
        return Some(format!("must be {min} to 15 characters long, it has {len}"));
    }
    if let Some(c) = id.chars().find(|c| !c.is_ascii_graphic() || matches!(c, '*' | '>' | '~' | '^')) {
        return Some(format!(
            "must not contain {c:?} (spaces, control characters, non-ASCII and the separators * > ~ ^ are refused)"
        ));
    }
    None
}

/// "0640", "640" or "0o640" → 0o640; permission bits only (no setuid, setgid or sticky).
fn parse_file_mode(s: &str) -> Option<u32> {
    let digits = s.strip_prefix("0o").unwrap_or(s);
    if digits.is_empty() || digits.len() > 4 || !digits.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
        return None;
    }
    u32::from_str_radix(digits, 8).ok().filter(|m| *m <= 0o777)
}

/// Our column that `name` means: a canonical column of any kind (the map is per account, not per
/// kind), or a built-in alias of one, which is resolved here because the header mapper applies a
/// partner's map after the aliases would have been looked up.
fn known_column(name: &str) -> Option<&'static str> {
    use crate::formats::{columns, Kind, ALIASES};
    let n = crate::formats::header::normalize(name);
    let canonical = Kind::ALL.iter().flat_map(|k| columns(*k)).find(|c| c.name == n).map(|c| c.name);
    canonical.or_else(|| ALIASES.iter().find(|(alias, _)| *alias == n).map(|(_, c)| *c))
}

/// Our columns by kind, for the message that refuses an unknown one.
fn column_list() -> String {
    use crate::formats::{columns, Kind};
    let kinds = Kind::ALL.iter().map(|k| {
        let names: Vec<&str> = columns(*k).iter().map(|c| c.name).collect();
        format!("{}: {}", k.as_str(), names.join(", "))
    });
    kinds.collect::<Vec<_>>().join("; ")
}

/// Why a `drop` value is refused (the URL is quoted, except where it holds a password).
#[derive(Debug, thiserror::Error)]
enum DropUrlError {
    #[error("drop {0:?}: file:// URLs need an absolute path")]
    FileNotAbsolute(String),
    #[error("drop {url:?}: {source}")]
    Unparsable { url: String, source: Box<dyn std::error::Error + Send + Sync> },
    #[error("drop: do not put a password in the sftp URL; use sftp_password_env")]
    Password,
    #[error("drop {0:?}: the sftp URL needs a user (sftp://user@host/path)")]
    NoUser(String),
    #[error("drop {0:?}: no host")]
    NoHost(String),
    #[error("drop {0:?}: give the drop's absolute folder on the server")]
    NoFolder(String),
    #[error("drop {0:?}: only file:// and sftp:// are supported")]
    Scheme(String),
}

fn parse_drop(s: &str, base: &Path) -> Result<DropLocation, DropUrlError> {
    if let Some(rest) = s.strip_prefix("file://") {
        if !rest.starts_with('/') {
            return Err(DropUrlError::FileNotAbsolute(s.into()));
        }
        return Ok(DropLocation::Local(PathBuf::from(rest)));
    }
    if s.starts_with("sftp://") {
        let url = reqwest::Url::parse(s).map_err(|e| DropUrlError::Unparsable { url: s.into(), source: e.into() })?;
        if url.password().is_some() {
            return Err(DropUrlError::Password);
        }
        let user = url.username().to_string();
        if user.is_empty() {
            return Err(DropUrlError::NoUser(s.into()));
        }
        let host = url.host_str().ok_or_else(|| DropUrlError::NoHost(s.into()))?.to_string();
        let path = url.path().to_string();
        if path.is_empty() || path == "/" {
            return Err(DropUrlError::NoFolder(s.into()));
        }
        return Ok(DropLocation::Sftp { user, host, port: url.port().unwrap_or(22), path });
    }
    if s.contains("://") {
        return Err(DropUrlError::Scheme(s.into()));
    }
    Ok(DropLocation::Local(base.join(s)))
}

/// The commented config `stitch-bridge init` writes.
pub fn template(drop_path: &str, stitch_url: &str) -> String {
    format!(
        r#"# stitch-bridge configuration. Relative paths resolve against this file's folder.

[ledger]
path = "state/ledger.sqlite"         # SQLite file: what was seen, sent and decided
# url = "postgres://bridge@db.internal:5432/bridge"  # instead of path: PostgreSQL, shared by workers
# password_env = "STITCH_BRIDGE_DB_PASSWORD"         # the database password, from the environment
# lease_seconds = 60                 # a dead worker's accounts are taken over after this long
# max_connections = 16               # accounts cycled at once by one process

# [ui]                               # the operator console: `stitch-bridge ui`, `watch --ui-listen`
# token_env = "STITCH_BRIDGE_UI_TOKEN"  # the console token (actions need it), from the environment
# token_label = "ops"                # recorded as who did each console action

[[account]]                          # one entry per warehouse/Stitch account pair
name = "main"
drop = "{drop_path}"                 # a folder, file:///abs/path, or sftp://user@host:22/abs/path
stitch_url = "{stitch_url}"          # Stitch API base URL (`stitch-bridge sim` listens on {sim})
token_env = "STITCH_TOKEN"           # or token_file = "secrets/main.token" (mode 0600)
settle_seconds = 10                  # a file must be unchanged this long before it is taken
# inventory_mode = "snapshot"        # or "delta": quantity is a signed adjustment
# skip_identical = "same_name"       # a file sent again (same name, same bytes) is skipped; "any_name" | "never"
# zero_missing = false               # snapshot: set SKUs missing from the file to 0 ...
# zero_missing_max_share = 0.2       # ... unless that would zero more than this share
# concurrency = 8                    # Stitch requests in flight
# requests_per_second = 10           # optional cap
# max_retries = 5                    # retries of a request that failed transiently
# backoff_ms = 200                   # first retry delay (doubled per attempt, jittered)
# max_retry_wait_seconds = 120       # longest wait between attempts, whatever Retry-After says
# max_response_bytes = 16777216      # larger Stitch answers are cut off and are an error
# max_cycle_seconds = 3600           # one cycle stops (work left pending) after this long
# timezone = "UTC"                   # for dates without an offset
# delimiter = ","
# date_format = "%d.%m.%Y"           # partner's own date format, tried first
# poll_seconds = 60                  # watch: how often sFTP drops are polled
# download_interval_seconds = 300    # watch: how often open fulfillments are pulled
# pgp_secret_key_file = "secrets/bridge.sec.asc"  # decrypts inbound .pgp/.gpg/.asc files
# pgp_passphrase_env = "STITCH_BRIDGE_PGP_PASSPHRASE"
# pgp_partner_public_key_file = "keys/warehouse.pub.asc"
# pgp_require_signature = true       # refuse files the partner did not sign
# pgp_encrypt_outbound = true        # order, cancel and 997 files go out as NAME.pgp
# pgp_encrypt_results = true         # result and error files too
# pgp_sign_outbound = true           # signed with our key
# [account.columns]                  # partner column name = our column name
# "Item Number" = "sku"
# [account.x12]                      # an X12 trading partner (files in inbound/edi, 997s to outbound/acks)
# interchange_id = "BRIDGE"          # ours (ISA06); partner_interchange_id is theirs
# partner_interchange_id = "ACMEWH"
# orders_as = "x12"                  # send 940s instead of CSV order files
"#,
        sim = crate::sim::DEFAULT_LISTEN,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ui_table_is_checked() {
        let c = Config::parse(MIN, Path::new(".")).unwrap();
        assert_eq!(c.ui, UiSettings::default());
        assert_eq!(c.ui.token_label, "console");
        let c = Config::parse(&format!("[ui]\ntoken_env = \"UI_TOKEN\"\ntoken_label = \"ops\"\n{MIN}"), Path::new("."))
            .unwrap();
        assert_eq!((c.ui.token_env.as_deref(), c.ui.token_label.as_str()), (Some("UI_TOKEN"), "ops"));
        let e = Config::parse(&format!("[ui]\ntoken = \"x\"\n{MIN}"), Path::new(".")).unwrap_err();
        assert!(e.message.contains("unknown field") && e.line == Some(2), "{e}");
        let e = Config::parse(&format!("[ui]\ntoken_env = \"A=B\"\n{MIN}"), Path::new(".")).unwrap_err();
        assert!(e.message.contains("[ui] token_env") && e.line == Some(2), "{e}");
        let e = Config::parse(&format!("[ui]\ntoken_label = \"  \"\n{MIN}"), Path::new(".")).unwrap_err();
        assert!(e.message.contains("token_label"), "{e}");
    }

    const MIN: &str = r#"
[[account]]
name = "acme"
drop = "drops/acme"
stitch_url = "http://127.0.0.1:8080"
token_env = "ACME_STITCH_TOKEN"
"#;

    #[test]
    fn relative_paths_resolve_against_config_folder() {
        let c = Config::parse(MIN, Path::new("/etc/sb")).unwrap();
        assert_eq!(c.ledger, crate::ledger::LedgerLocation::Sqlite(PathBuf::from("/etc/sb/state/ledger.sqlite")));
        assert_eq!(c.accounts[0].drop, DropLocation::Local(PathBuf::from("/etc/sb/drops/acme")));
        assert_eq!(c.accounts[0].settle, Duration::from_secs(10));
    }

    #[test]
    fn answer_and_cycle_bounds_have_defaults_and_can_be_set() {
        let a = &Config::parse(MIN, Path::new(".")).unwrap().accounts[0];
        assert_eq!(
            (a.max_response_bytes, a.max_retry_wait, a.max_cycle),
            (16 << 20, Duration::from_secs(120), Duration::from_secs(3600))
        );
        let text = format!("{MIN}max_response_bytes = 4096\nmax_retry_wait_seconds = 0\nmax_cycle_seconds = 5\n");
        let a = &Config::parse(&text, Path::new(".")).unwrap().accounts[0];
        assert_eq!(
            (a.max_response_bytes, a.max_retry_wait, a.max_cycle),
            (4096, Duration::ZERO, Duration::from_secs(5))
        );
    }

    #[test]
    fn file_mode_is_octal_and_checked_at_load() {
        assert_eq!(Config::parse(MIN, Path::new("/")).unwrap().accounts[0].file_mode, None);
        let c = Config::parse(&format!("{MIN}file_mode = \"0640\"\n"), Path::new("/")).unwrap();
        assert_eq!(c.accounts[0].file_mode, Some(0o640));
        for bad in ["\"0648\"", "\"4755\"", "\"rw-r-----\"", "\"\"", "640"] {
            let err = Config::parse(&format!("{MIN}file_mode = {bad}\n"), Path::new("/")).unwrap_err();
            assert!(err.to_string().contains("file_mode"), "{bad}: {err}");
        }
    }

    #[test]
    fn unknown_key_is_named_with_its_line() {
        let text = format!("{MIN}settle_secs = 3\n");
        let err = Config::parse(&text, Path::new(".")).unwrap_err().to_string();
        assert!(err.contains("settle_secs"), "{err}");
        assert!(err.contains("line 7"), "{err}");
    }

    #[test]
    fn sftp_url_parsed_and_checked() {
        let text = MIN.replace("drops/acme", "sftp://wh@sftp.example.com:2222/acme")
            + "sftp_key_file = \"k\"\nknown_hosts = \"kh\"\n";
        let c = Config::parse(&text, Path::new("/c")).unwrap();
        assert_eq!(
            c.accounts[0].drop,
            DropLocation::Sftp { user: "wh".into(), host: "sftp.example.com".into(), port: 2222, path: "/acme".into() }
        );
        let no_auth = MIN.replace("drops/acme", "sftp://wh@h/acme");
        assert!(Config::parse(&no_auth, Path::new("/c")).unwrap_err().to_string().contains("sftp_key_file"));
    }

    #[test]
    fn bad_values_rejected_at_load() {
        for (k, v) in [
            ("concurrency", "0"),
            ("timezone", "\"Mars/Base\""),
            ("delimiter", "\"ab\""),
            ("zero_missing_max_share", "2.0"),
            ("max_response_bytes", "10"),
            ("max_cycle_seconds", "0"),
        ] {
            let text = format!("{MIN}{k} = {v}\n");
            let err = Config::parse(&text, Path::new(".")).unwrap_err().to_string();
            assert!(err.contains(k), "{k}: {err}");
        }
    }

    #[test]
    fn ledger_is_a_path_or_a_url_without_password() {
        use crate::ledger::LedgerLocation;
        let pg = format!("[ledger]\nurl = \"postgres://sb@127.0.0.1:5432/sb\"\npassword_env = \"SB_DB_PW\"\nlease_seconds = 5\n{MIN}");
        let c = Config::parse(&pg, Path::new("/c")).unwrap();
        assert_eq!(
            c.ledger,
            LedgerLocation::Postgres {
                url: "postgres://sb@127.0.0.1:5432/sb".into(),
                password_env: Some("SB_DB_PW".into()),
                tls: crate::ledger::PgTls { sslmode: crate::ledger::SslMode::VerifyFull, ssl_ca_file: None },
            }
        );
        assert_eq!((c.lease_ttl, c.max_connections), (Duration::from_secs(5), Some(16)));
        let both = format!("[ledger]\npath = \"l.sqlite\"\nurl = \"postgres://h/db\"\n{MIN}");
        assert!(Config::parse(&both, Path::new("/c")).unwrap_err().to_string().contains("not both"));
        let inline = format!("[ledger]\nurl = \"postgres://sb:hunter2@h/db\"\n{MIN}");
        let err = Config::parse(&inline, Path::new("/c")).unwrap_err().to_string();
        assert!(err.contains("password_env") && !err.contains("hunter2"), "{err}");
        let stray = format!("[ledger]\npassword_env = \"X\"\n{MIN}");
        assert!(Config::parse(&stray, Path::new("/c")).unwrap_err().to_string().contains("only with url"));
    }

    #[test]
    fn ledger_tls_is_verify_full_by_default_and_the_ca_file_is_relative_to_the_config() {
        use crate::ledger::{LedgerLocation, PgTls, SslMode};
        let tls_of = |extra: &str| -> Result<PgTls, ConfigProblem> {
            let text = format!("[ledger]\nurl = \"postgres://sb@db.example/sb\"\n{extra}{MIN}");
            match Config::parse(&text, Path::new("/etc/sb"))?.ledger {
                LedgerLocation::Postgres { tls, .. } => Ok(tls),
                other => panic!("{other:?}"),
            }
        };
        assert_eq!(tls_of("").unwrap(), PgTls { sslmode: SslMode::VerifyFull, ssl_ca_file: None });
        assert_eq!(
            tls_of("ssl_ca_file = \"tls/ca.pem\"\n").unwrap(),
            PgTls { sslmode: SslMode::VerifyFull, ssl_ca_file: Some("/etc/sb/tls/ca.pem".into()) }
        );
        assert_eq!(tls_of("sslmode = \"require\"\n").unwrap().sslmode, SslMode::Require);
        assert_eq!(tls_of("sslmode = \"disable\"\n").unwrap().sslmode, SslMode::Disable);
        let err = tls_of("sslmode = \"prefer\"\n").unwrap_err().to_string();
        assert!(err.contains("sslmode") && err.contains("verify-full"), "{err}");
        let err = tls_of("sslmode = \"require\"\nssl_ca_file = \"ca.pem\"\n").unwrap_err().to_string();
        assert!(err.contains("ssl_ca_file applies only with sslmode"), "{err}");
        let sqlite = format!("[ledger]\nsslmode = \"require\"\n{MIN}");
        assert!(Config::parse(&sqlite, Path::new("/c")).unwrap_err().to_string().contains("only with url"));
    }

    #[test]
    fn value_errors_carry_line_and_column_but_never_quote_a_password() {
        let err = Config::parse(&format!("{MIN}delimiter = \"ab\"\n"), Path::new(".")).unwrap_err();
        assert_eq!((err.line, err.column), (Some(7), Some(13)), "{err}");
        assert!(err.to_string().contains("7 | delimiter = \"ab\"\n  |             ^^^^"), "{err}");
        let sftp = MIN.replace("drops/acme", "sftp://wh:hunter2@h/acme");
        let err = Config::parse(&sftp, Path::new(".")).unwrap_err();
        assert_eq!(err.line, Some(4), "{err}");
        assert!(!err.to_string().contains("hunter2"), "{err}");
        let inline = format!("[ledger]\nurl = \"postgres://sb:hunter2@h/db\"\n{MIN}");
        let err = Config::parse(&inline, Path::new(".")).unwrap_err();
        assert_eq!((err.line, err.column), (Some(2), Some(7)), "{err}");
        assert!(!err.to_string().contains("hunter2"), "{err}");
    }

    #[test]
    fn locate_copes_with_spans_at_line_ends_and_past_the_text() {
        assert_eq!(locate("a = 1\r\nb", 5..6), Some((1, 6, "a = 1", 1)));
        assert_eq!(locate("a = 1\n", 6..9), Some((2, 1, "", 1)));
        assert_eq!(locate("é", 1..2), None);
        assert_eq!(locate("a", 5..6), None);
    }

    #[test]
    fn columns_map_to_our_columns_or_their_aliases() {
        let ok = format!("{MIN}[account.columns]\n\"Stock Level\" = \"qty\"\n\"Item #\" = \"SKU\"\n");
        let c = Config::parse(&ok, Path::new(".")).unwrap();
        let map = &c.accounts[0].parse.column_map;
        assert_eq!((map["stock level"].as_str(), map["item #"].as_str()), ("quantity", "sku"));
        let bad = format!("{MIN}[account.columns]\n\"Item\" = \"skew\"\n");
        let err = Config::parse(&bad, Path::new(".")).unwrap_err();
        assert_eq!((err.line, err.column), (Some(8), Some(10)), "{err}");
        assert!(err.message.contains("orders: order_ref, order_date"), "{err}");
    }

    #[test]
    fn the_packaged_config_parses() {
        let c =
            Config::parse(include_str!("../packaging/stitch-bridge.toml"), Path::new("/etc/stitch-bridge")).unwrap();
        assert_eq!(c.accounts[0].drop, DropLocation::Local(PathBuf::from("/srv/drop/main")));
    }

    #[test]
    fn template_parses() {
        let c = Config::parse(&template("drop", "http://127.0.0.1:8080"), Path::new("/x")).unwrap();
        assert_eq!(c.accounts.len(), 1);
    }
}
