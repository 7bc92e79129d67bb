//! The console's pages (GET). Every value goes through maud's escaping: never `PreEscaped` on
//! data. Lists are plain links and GET forms, so they work without JavaScript; htmx (boosted
//! links and forms, the accounts' refresh) only saves full reloads.

use super::{blocking, chart, errfile, Fail, Sid, State};
use crate::ledger::{FileFilter, FileRow, FileState, Page, StateFilter};
use axum::extract::{Path, Query, State as AxState};
use axum::response::Html;
use axum::Extension;
use maud::{html, Markup, DOCTYPE};
use std::collections::BTreeMap;
use std::sync::Arc;

pub const PER_PAGE: usize = 50;

const HTMX_CONFIG: &str =
    r#"{"includeIndicatorStyles":false,"allowEval":false,"allowScriptTags":false,"historyCacheSize":0}"#;

type Params = Query<BTreeMap<String, String>>;

fn param<'a>(q: &'a BTreeMap<String, String>, k: &str) -> Option<&'a str> {
    q.get(k).map(|s| s.trim()).filter(|s| !s.is_empty())
}

fn page_of(q: &BTreeMap<String, String>, k: &str) -> usize {
    param(q, k).and_then(|p| p.parse::<usize>().ok()).filter(|p| (1..=1_000_000).contains(p)).unwrap_or(1)
}

/// Fixed texts for `?done=…` after an action: never text from the request.
fn done_text(code: &str) -> Option<&'static str> {
    Some(match code {
        "resumed" => "Account resumed: the next cycle processes its files.",
        "not-halted" => "The account was not halted.",
        "cleared" => "Needs-attention cleared: the next cycle checks again.",
        "not-attention" => "The account did not need attention.",
        "reprocessed" => "The file was queued again in its inbound folder (see the console actions below).",
        "uploaded" => "The file was written into the inbound folder; the next cycle takes it.",
        "signed-in" => "Signed in.",
        "signed-out" => "Signed out.",
        _ => return None,
    })
}

pub(crate) fn layout(st: &State, sid: Option<&Sid>, title: &str, body: Markup) -> Markup {
    let authed = sid.is_some_and(|s| s.authed);
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                // No inline styles (the CSP refuses them), no eval, no scripts from swapped
                // content, and no copies of pages (ledger data) kept in localStorage.
                meta name="htmx-config" content=(HTMX_CONFIG);
                title { (title) " · stitch-bridge" }
                link rel="stylesheet" href="/assets/console.css";
                script src="/assets/htmx.min.js" defer {}
            }
            body hx-boost="true" {
                header {
                    nav {
                        strong { "stitch-bridge" }
                        a href="/" { "Accounts" }
                        a href="/files" { "Files" }
                        a href="/orders" { "Orders" }
                        a href="/alerts" { "Alerts" }
                        a href="/lookup" { "Lookup" }
                        a href="/upload" { "Upload" }
                        span.who {
                            @if authed {
                                "signed in as " (st.label) " "
                                @if let Some(s) = sid {
                                    form.inline method="post" action="/logout" {
                                        input type="hidden" name="csrf" value=(s.csrf);
                                        button type="submit" { "Sign out" }
                                    }
                                }
                            } @else if st.token_configured() {
                                a href="/login" { "Sign in" }
                            } @else {
                                "read-only (no [ui] token_env)"
                            }
                        }
                    }
                }
                main { h1 { (title) } (body) }
                footer { "ledger: " (st.ledger_at()) }
            }
        }
    }
}

/// An error or notice page (see [`Fail`]); `login` adds the sign-in link.
pub(crate) fn message_page(title: &str, message: &str, login: bool) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                title { (title) " · stitch-bridge" }
                link rel="stylesheet" href="/assets/console.css";
            }
            body {
                header { nav { strong { "stitch-bridge" } a href="/" { "Accounts" } } }
                main {
                    h1 { (title) }
                    p.message { (message) }
                    @if login { p { a href="/login" { "Sign in with the console token" } } }
                }
            }
        }
    }
}

fn notice(q: &BTreeMap<String, String>) -> Markup {
    html! {
        @if let Some(t) = param(q, "done").and_then(done_text) { p.notice role="status" { (t) } }
    }
}

/// A CSRF-protected POST button.
pub(crate) fn action_button(sid: &Sid, action: &str, label: &str) -> Markup {
    html! {
        form.inline method="post" action=(action) {
            input type="hidden" name="csrf" value=(sid.csrf);
            button type="submit" { (label) }
        }
    }
}

fn pager(base: &str, q: &BTreeMap<String, String>, key: &str, page: usize, more: bool) -> Markup {
    let link = |p: usize| {
        let mut q = q.clone();
        q.remove("done");
        q.insert(key.to_string(), p.to_string());
        let qs: Vec<String> =
            q.iter().filter(|(_, v)| !v.is_empty()).map(|(k, v)| format!("{}={}", enc(k), enc(v))).collect();
        format!("{base}?{}", qs.join("&"))
    };
    html! {
        nav.pager {
            @if page > 1 { a rel="prev" href=(link(page - 1)) { "← previous" } }
            span { "page " (page) }
            @if more { a rel="next" href=(link(page + 1)) { "next →" } }
        }
    }
}

pub(crate) fn enc(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}

fn file_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

fn state_word(f: &FileRow) -> &'static str {
    match f.state {
        FileState::Processing => "processing",
        FileState::Archived => "archived",
        FileState::Rejected => "rejected",
    }
}

fn ms_time(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_else(|| ms.to_string())
}

// ---- accounts ---------------------------------------------------------------------------------

struct AccountView {
    name: String,
    halt: Option<crate::ledger::Halt>,
    attention: Option<crate::model::Recorded>,
    last_cycle: Option<(String, String, String)>,
    files_today: i64,
    open_intents: i64,
    oldest_waiting: Option<(String, String)>,
    x12_unacked: Option<i64>,
    chart: Markup,
}

pub async fn accounts(
    AxState(st): AxState<Arc<State>>,
    Extension(sid): Extension<Sid>,
    Query(q): Params,
) -> Result<Html<String>, Fail> {
    let s = st.clone();
    let (views, actions) = blocking(move || {
        s.with_ledger(|l| -> crate::ledger::Result<_> {
            let now = chrono::Utc::now();
            let today = now.date_naive();
            let day_start = today.format("%Y-%m-%d").to_string();
            let since = chart::since(today);
            let mut views = Vec::new();
            for a in &s.config.accounts {
                let oldest_waiting = match l.oldest_observation(&a.name)? {
                    Some((path, ms)) => Some((path, ms_time(ms))),
                    None => l.oldest_unfinished(&a.name)?,
                };
                views.push(AccountView {
                    name: a.name.clone(),
                    halt: l.halted(&a.name)?,
                    attention: l.attention(&a.name)?.filter(|r| r.announced()),
                    last_cycle: l.last_cycle(&a.name)?,
                    files_today: l.files_seen_since(&a.name, &day_start)?,
                    open_intents: l.count_open_intents(&a.name)?,
                    oldest_waiting,
                    x12_unacked: if a.x12.is_some() { Some(l.count_x12_unacked(&a.name)?) } else { None },
                    chart: chart::render(&a.name, today, &l.files_per_day(&a.name, &since)?),
                });
            }
            Ok((views, l.console_actions(10)?))
        })
    })
    .await???;
    let body = html! {
        (notice(&q))
        div #accounts hx-get="/" hx-trigger="every 30s" hx-select="#accounts" hx-swap="outerHTML" hx-disinherit="*" {
            @if views.is_empty() { p { "No accounts are configured." } }
            @for v in &views {
                section.account id={"account-" (v.name)} {
                    h2 {
                        (v.name) " "
                        @if v.halt.is_some() {
                            span.badge.halted { "halted" }
                        } @else if v.attention.is_some() {
                            span.badge.attention { "needs attention" }
                        } @else {
                            span.badge.ok { "ok" }
                        }
                    }
                    @if let Some(h) = &v.halt {
                        p.problem { "Halted since " (h.at) " (" (h.code) "): " (h.reason) }
                        (action_button(&sid, &format!("/accounts/{}/resume", v.name), "Resume"))
                    }
                    @if let Some(a) = &v.attention {
                        p.problem { "Needs attention since " (a.since) " (" (a.reason.as_str()) "): " (a.message) }
                        (action_button(&sid, &format!("/accounts/{}/clear", v.name), "Clear"))
                    }
                    div.row {
                        table.facts {
                            tr { th { "last cycle" } td {
                                @match &v.last_cycle {
                                    Some((at, outcome, summary)) => { (at) " " strong { (outcome) } " (" (summary) ")" }
                                    None => "never",
                                }
                            } }
                            tr { th { "files today" } td { a href={"/files?account=" (enc(&v.name))} { (v.files_today) } } }
                            tr { th { "pending writes" } td { (v.open_intents) } }
                            tr { th { "oldest waiting file" } td {
                                @match &v.oldest_waiting {
                                    Some((path, since)) => { (path) " since " (since) }
                                    None => "none",
                                }
                            } }
                            tr { th { "unacknowledged X12 files" } td {
                                @match v.x12_unacked { Some(n) => (n), None => "— (no X12 partner)" }
                            } }
                        }
                        figure { (v.chart) figcaption { "files (bars) and rows (line) per day, last 14 days" } }
                    }
                }
            }
        }
        (actions_table(&actions))
    };
    Ok(Html(layout(&st, Some(&sid), "Accounts", body).into_string()))
}

fn actions_table(actions: &[crate::ledger::ConsoleAction]) -> Markup {
    html! {
        @if !actions.is_empty() {
            h2 { "Console actions" }
            table.list #console-actions {
                thead { tr { th { "at" } th { "who" } th { "account" } th { "action" } th { "target" } th { "detail" } } }
                tbody {
                    @for a in actions {
                        tr { td { (a.at) } td { (a.who) } td { (a.account) } td { (a.action) } td { (a.target) } td { (a.detail) } }
                    }
                }
            }
        }
    }
}

// ---- files --------------------------------------------------------------------------------------

fn select(name: &str, label: &str, options: &[&str], current: Option<&str>) -> Markup {
    html! {
        label { (label) " "
            select name=(name) {
                option value="" selected[current.is_none()] { "any" }
                @for o in options { option value=(o) selected[current == Some(*o)] { (o) } }
            }
        }
    }
}

pub async fn files(
    AxState(st): AxState<Arc<State>>,
    Extension(sid): Extension<Sid>,
    Query(q): Params,
) -> Result<Html<String>, Fail> {
    let page = page_of(&q, "page");
    let filter = FileFilter {
        account: param(&q, "account").map(str::to_string),
        kind: param(&q, "kind").map(str::to_string),
        state: param(&q, "state").and_then(StateFilter::parse),
        from: param(&q, "from").filter(|d| is_day(d)).map(str::to_string),
        to: param(&q, "to").filter(|d| is_day(d)).map(str::to_string),
        q: param(&q, "q").map(str::to_string),
    };
    let s = st.clone();
    let f = filter.clone();
    let found: Page<FileRow> = blocking(move || s.with_ledger(|l| l.console_files(&f, page, PER_PAGE))).await???;
    let accounts: Vec<&str> = st.config.accounts.iter().map(|a| a.name.as_str()).collect();
    let states: Vec<&str> = StateFilter::ALL.iter().map(|s| s.as_str()).collect();
    let body = html! {
        form.filters method="get" action="/files" {
            (select("account", "account", &accounts, filter.account.as_deref()))
            (select("kind", "kind", &["inventory", "orders", "shipments"], filter.kind.as_deref()))
            (select("state", "outcome", &states, filter.state.map(|s| s.as_str())))
            label { "from " input type="date" name="from" value=[filter.from.as_deref()]; }
            label { "to " input type="date" name="to" value=[filter.to.as_deref()]; }
            label { "name " input type="search" name="q" value=[filter.q.as_deref()] placeholder="part of the name"; }
            button type="submit" { "Filter" }
        }
        (files_table(&found.rows))
        (pager("/files", &q, "page", page, found.more))
    };
    Ok(Html(layout(&st, Some(&sid), "Files", body).into_string()))
}

fn is_day(d: &str) -> bool {
    chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d").is_ok()
}

fn files_table(rows: &[FileRow]) -> Markup {
    html! {
        @if rows.is_empty() { p #files-table { "No files match." } } @else {
            table.list #files-table {
                thead { tr { th { "id" } th { "account" } th { "kind" } th { "file" } th { "state" }
                    th.num { "ok" } th.num { "rejected" } th { "first seen" } th { "updated" } } }
                tbody {
                    @for f in rows {
                        tr class=(state_word(f)) {
                            td { a href={"/files/" (f.id)} { (f.id) } }
                            td { (f.account) }
                            td { (f.kind) }
                            td.name { a href={"/files/" (f.id)} { (file_name(&f.path)) } }
                            td { (state_word(f)) }
                            td.num { (f.accepted) }
                            td.num { (f.rejected) }
                            td { (f.first_seen) }
                            td { (f.updated_at) }
                        }
                    }
                }
            }
        }
    }
}

// ---- one file -----------------------------------------------------------------------------------

/// What the error table shows: the error file's own rows, or why not and the ledger's.
enum ErrorView {
    None,
    Table(errfile::ErrorTable),
    Unreadable { why: String, ledger: Vec<crate::ledger::StoredRecord> },
}

pub async fn file(
    AxState(st): AxState<Arc<State>>,
    Extension(sid): Extension<Sid>,
    Path(id): Path<String>,
    Query(q): Params,
) -> Result<Html<String>, Fail> {
    let id: i64 = id.parse().map_err(|_| Fail::NotFound("No such file.".into()))?;
    let rpage = page_of(&q, "rpage");
    let s = st.clone();
    let (f, records, actions) = blocking(move || {
        s.with_ledger(|l| -> crate::ledger::Result<_> {
            let Some(f) = l.file(id)? else { return Ok(None) };
            let records = l.console_records(id, rpage, PER_PAGE)?;
            let target = format!("file {id}");
            let actions: Vec<_> = l.console_actions(200)?.into_iter().filter(|a| a.target == target).collect();
            Ok(Some((f, records, actions)))
        })
    })
    .await???
    .ok_or_else(|| Fail::NotFound("No such file.".into()))?;
    let s = st.clone();
    let fr = f.clone();
    let errors = blocking(move || error_view(&s, &fr)).await?;
    let title = format!("File {}: {}", f.id, file_name(&f.path));
    let body = html! {
        (notice(&q))
        table.facts {
            tr { th { "account" } td { (f.account) } }
            tr { th { "kind" } td { (f.kind) } }
            tr { th { "path" } td.name { (f.path) } }
            tr { th { "state" } td { (state_word(&f)) " (step " (format!("{:?}", f.step)) ")" } }
            tr { th { "size" } td { (f.size) " bytes" } }
            tr { th { "rows" } td { (f.accepted) " ok, " (f.rejected) " rejected" } }
            tr { th { "first seen" } td { (f.first_seen) } }
            tr { th { "updated" } td { (f.updated_at) } }
            @if let Some(p) = &f.final_path { tr { th { "now at" } td.name { (p) } } }
            @if let Some(p) = &f.result_path { tr { th { "result file" } td.name { (p) } } }
            @if let Some(p) = &f.errors_path { tr { th { "error file" } td.name { (p) } } }
            @if let Some(d) = f.duplicate_of { tr { th { "duplicate of" } td { a href={"/files/" (d)} { "file " (d) } } } }
            @if let Some(m) = &f.message { tr { th { "message" } td { (m) } } }
        }
        p.downloads {
            "Download: "
            a href={"/files/" (f.id) "/original"} download { "original" }
            @if f.result_path.is_some() { " · " a href={"/files/" (f.id) "/result"} download { "result" } }
            @if f.errors_path.is_some() { " · " a href={"/files/" (f.id) "/errors"} download { "errors" } }
        }
        @if f.state == FileState::Archived && f.final_path.is_some() {
            (action_button(&sid, &format!("/files/{}/reprocess", f.id), "Reprocess"))
            span.hint { " copies the archived file back into its inbound folder under a new name; the next cycle processes it again" }
            @if f.kind == "inventory" && crate::formats::is_delta_name(file_name(&f.path)) {
                p.problem #delta-warning { "This is a delta file: reprocessing applies its adjustments to Stitch's stock again." }
            }
        }
        @if !actions.is_empty() { (actions_table(&actions)) }
        h2 { "Result rows" }
        @if records.rows.is_empty() { p { "No result rows." } } @else {
            table.list #records {
                thead { tr { th.num { "line" } th { "key" } th { "outcome" } th { "remote id" } th { "code" } th { "message" } } }
                tbody {
                    @for r in &records.rows {
                        tr class=(r.outcome) { td.num { (r.line) } td { (r.key.replace('\u{1f}', " / ")) } td { (r.outcome) }
                            td { (r.remote_id) } td { (r.code) } td { (r.message) } }
                    }
                }
            }
            (pager(&format!("/files/{}", f.id), &q, "rpage", rpage, records.more))
        }
        h2 { "Error rows" }
        @match &errors {
            ErrorView::None => p { "No error file." },
            ErrorView::Table(t) => {
                table.list #errors {
                    thead { tr {
                        th.num { "line" } th { "column" } th { "code" } th { "message" }
                        @for h in &t.header { th.cell { (h) } }
                    } }
                    tbody {
                        @for r in &t.rows {
                            tr { td.num { (r.line) } td { (r.column) } td { (r.code) } td { (r.message) }
                                @for c in &r.cells { td.cell { (c) } } }
                        }
                    }
                }
                @if t.more { p { "More rows in the error file; download it to see them all." } }
            },
            ErrorView::Unreadable { why, ledger } => {
                p.problem { "The error file cannot be shown here: " (why) ". The ledger's rejected rows:" }
                table.list #errors {
                    thead { tr { th.num { "line" } th { "key" } th { "code" } th { "message" } } }
                    tbody { @for r in ledger { tr { td.num { (r.line) } td { (r.key) } td { (r.code) } td { (r.message) } } } }
                }
            },
        }
    };
    Ok(Html(layout(&st, Some(&sid), &title, body).into_string()))
}

fn error_view(st: &State, f: &FileRow) -> ErrorView {
    let Some(path) = &f.errors_path else { return ErrorView::None };
    let table = (|| -> Result<errfile::ErrorTable, String> {
        if errfile::is_sealed(path) {
            return Err("it is sealed with OpenPGP (pgp_encrypt_results)".into());
        }
        let acct = errfile::account(&st.config, &f.account).map_err(|e| e.to_string())?;
        let bytes = errfile::read(acct, path).map_err(|e| e.to_string())?;
        errfile::parse(&bytes, acct.parse.delimiter, 500).map_err(|e| format!("it is not an error file of ours: {e}"))
    })();
    match table {
        Ok(t) => ErrorView::Table(t),
        Err(why) => {
            let ledger = st.with_ledger(|l| l.console_rejected_records(f.id, 500)).ok().and_then(|r| r.ok());
            ErrorView::Unreadable { why, ledger: ledger.unwrap_or_default() }
        }
    }
}

// ---- orders, alerts, lookup -----------------------------------------------------------------------

pub async fn orders(
    AxState(st): AxState<Arc<State>>,
    Extension(sid): Extension<Sid>,
    Query(q): Params,
) -> Result<Html<String>, Fail> {
    let page = page_of(&q, "page");
    let account = param(&q, "account").map(str::to_string);
    let s = st.clone();
    let a = account.clone();
    let sent = blocking(move || s.with_ledger(|l| l.console_sent(a.as_deref(), page, PER_PAGE))).await???;
    let accounts: Vec<&str> = st.config.accounts.iter().map(|a| a.name.as_str()).collect();
    let body = html! {
        form.filters method="get" action="/orders" {
            (select("account", "account", &accounts, account.as_deref()))
            button type="submit" { "Filter" }
        }
        p { "Orders (fulfillments) written to the warehouse, and their cancellations." }
        (sent_table(&sent.rows))
        (pager("/orders", &q, "page", page, sent.more))
    };
    Ok(Html(layout(&st, Some(&sid), "Orders sent", body).into_string()))
}

fn sent_table(rows: &[crate::ledger::SentRow]) -> Markup {
    html! {
        @if rows.is_empty() { p #orders { "None." } } @else {
            table.list #orders {
                thead { tr { th { "account" } th { "order" } th { "fulfillment" } th { "order file" } th { "sent" }
                    th { "state" } th { "cancel file" } th { "closed" } } }
                tbody {
                    @for r in rows {
                        tr class=(r.state) {
                            td { (r.account) }
                            td { a href={"/lookup?order=" (enc(&r.order_ref))} { (r.order_ref) } }
                            td { (r.fulfillment_id) } td.name { (r.file) } td { (r.sent_at) } td { (r.state) }
                            td.name { (r.cancel_file.as_deref().unwrap_or("")) } td { (r.closed_at.as_deref().unwrap_or("")) }
                        }
                    }
                }
            }
        }
    }
}

pub async fn alerts(
    AxState(st): AxState<Arc<State>>,
    Extension(sid): Extension<Sid>,
    Query(q): Params,
) -> Result<Html<String>, Fail> {
    let page = page_of(&q, "page");
    let account = param(&q, "account").map(str::to_string);
    let s = st.clone();
    let a = account.clone();
    let (current, cycles, actions, raised) = blocking(move || {
        s.with_ledger(|l| -> crate::ledger::Result<_> {
            let mut current = Vec::new();
            for acct in &s.config.accounts {
                if let Some(h) = l.halted(&acct.name)? {
                    current.push((acct.name.clone(), "halted", h.at, format!("{}: {}", h.code, h.reason)));
                }
                if let Some(r) = l.attention(&acct.name)? {
                    let word = if r.announced() { "needs attention" } else { "needs attention (not yet announced)" };
                    current.push((acct.name.clone(), word, r.since, format!("{}: {}", r.reason.as_str(), r.message)));
                }
            }
            let raised = l.console_alerts(a.as_deref(), page, PER_PAGE)?;
            Ok((current, l.console_cycles(a.as_deref(), page, PER_PAGE)?, l.console_actions(50)?, raised))
        })
    })
    .await???;
    let accounts: Vec<&str> = st.config.accounts.iter().map(|a| a.name.as_str()).collect();
    let body = html! {
        p { "What the ledger holds: the halts and needs-attention states now, every alert raised (as the alert hooks got it), and every cycle that did not end ok." }
        h2 { "Now" }
        @if current.is_empty() { p #current { "Every account is ok." } } @else {
            table.list #current {
                thead { tr { th { "account" } th { "state" } th { "since" } th { "why" } } }
                tbody { @for (a, w, since, why) in &current { tr { td { (a) } td { (w) } td { (since) } td { (why) } } } }
            }
        }
        form.filters method="get" action="/alerts" {
            (select("account", "account", &accounts, account.as_deref()))
            button type="submit" { "Filter" }
        }
        h2 { "Alerts raised" }
        @if raised.is_empty() { p #raised { "None." } } @else {
            table.list #raised {
                thead { tr { th { "at" } th { "account" } th { "event" } th { "alert" } } }
                tbody { @for r in raised.iter().take(PER_PAGE) {
                    tr class=(r.event) { td { (r.at) } td { (r.account) } td { (r.event) } td.pre { (r.text) } }
                } }
            }
        }
        h2 { "Cycles that did not end ok" }
        @if cycles.rows.is_empty() { p #cycles { "None." } } @else {
            table.list #cycles {
                thead { tr { th { "account" } th { "started" } th { "finished" } th { "outcome" } th { "summary" } } }
                tbody { @for c in &cycles.rows {
                    tr class=(c.outcome) { td { (c.account) } td { (c.started_at) } td { (c.finished_at) } td { (c.outcome) } td { (c.summary) } }
                } }
            }
        }
        (pager("/alerts", &q, "page", page, cycles.more || raised.len() > PER_PAGE))
        (actions_table(&actions))
    };
    Ok(Html(layout(&st, Some(&sid), "Alerts", body).into_string()))
}

/// What Stitch says about one fulfillment the ledger sent, or why it could not be asked.
struct AtStitch {
    account: String,
    fulfillment_id: String,
    answer: Result<Option<crate::stitch::wire::Fulfillment>, String>,
}

/// Ask Stitch about the fulfillments the ledger sent for an order (at most 10, 5 s in all per
/// fulfillment); a halted account is not asked (its token was refused).
async fn ask_stitch(st: &State, sent: &[crate::ledger::SentRow], halted: &[String]) -> Vec<AtStitch> {
    let mut out = Vec::new();
    for r in sent.iter().take(10) {
        let answer = match st.config.account(&r.account) {
            None => Err("the account is no longer configured".to_string()),
            Some(_) if halted.contains(&r.account) => Err("not asked: the account is halted".to_string()),
            Some(acct) => {
                let client = crate::engine::account::read_token(&acct.token)
                    .map_err(|e| e.to_string())
                    .and_then(|t| crate::engine::account::client_for(acct, &t).map_err(|e| e.to_string()));
                match client {
                    Err(e) => Err(e),
                    Ok(c) => match tokio::time::timeout(
                        std::time::Duration::from_secs(5),
                        c.get_fulfillment(&r.fulfillment_id),
                    )
                    .await
                    {
                        Ok(Ok(f)) => Ok(f),
                        Ok(Err(e)) => Err(format!("Stitch not reachable or refused: {e}")),
                        Err(_) => Err("Stitch did not answer within 5 s".to_string()),
                    },
                }
            }
        };
        out.push(AtStitch { account: r.account.clone(), fulfillment_id: r.fulfillment_id.clone(), answer });
    }
    out
}

pub async fn lookup(
    AxState(st): AxState<Arc<State>>,
    Extension(sid): Extension<Sid>,
    Query(q): Params,
) -> Result<Html<String>, Fail> {
    let order = param(&q, "order").map(str::to_string);
    let found = match order.clone() {
        None => None,
        Some(o) => {
            let s = st.clone();
            Some(
                blocking(move || {
                    s.with_ledger(|l| -> crate::ledger::Result<_> {
                        let mut halted = Vec::new();
                        for a in &s.config.accounts {
                            if l.halted(&a.name)?.is_some() {
                                halted.push(a.name.clone());
                            }
                        }
                        Ok((l.records_for_order(&o, 200)?, l.sent_for_order(&o)?, halted))
                    })
                })
                .await???,
            )
        }
    };
    let ask = param(&q, "stitch") == Some("1");
    let at_stitch = match &found {
        Some((_, sent, halted)) if ask => Some(ask_stitch(&st, sent, halted).await),
        _ => None,
    };
    // Stitch itself: the sales order and its open fulfillments, asked of every account not halted.
    let in_stitch = match (&order, &found) {
        (Some(o), Some((_, _, halted))) if ask => {
            let accounts = st.config.accounts.iter().map(|a| (a.clone(), halted.contains(&a.name))).collect();
            super::stitch_lookup::lookup(accounts, o).await
        }
        _ => Vec::new(),
    };
    let body = html! {
        form.filters method="get" action="/lookup" {
            label { "order reference " input type="search" name="order" value=[order.as_deref()] required; }
            button type="submit" { "Look up" }
        }
        @if let Some((records, sent, _)) = &found {
            h2 { "In files" }
            @if records.is_empty() { p #found-records { "No file row names this order." } } @else {
                table.list #found-records {
                    thead { tr { th { "account" } th { "file" } th.num { "line" } th { "outcome" } th { "remote id" } th { "code" } th { "message" } } }
                    tbody { @for r in records {
                        tr class=(r.record.outcome) {
                            td { (r.account) }
                            td.name { a href={"/files/" (r.file_id)} { (file_name(&r.path)) } }
                            td.num { (r.record.line) } td { (r.record.outcome) } td { (r.record.remote_id) }
                            td { (r.record.code) } td { (r.record.message) }
                        }
                    } }
                }
            }
            h2 { "Sent to the warehouse" }
            (sent_table(sent))
            h2 { "At Stitch" }
            @match &at_stitch {
                None => {
                    @if let Some(o) = &order {
                        p { a href={"/lookup?stitch=1&order=" (enc(o))} { "Ask Stitch about this order" } }
                    }
                },
                Some(answers) => {
                    table.list #at-stitch {
                        thead { tr { th { "account" } th { "fulfillment" } th { "Stitch says" } } }
                        tbody { @for a in answers {
                            tr { td { (a.account) } td { (a.fulfillment_id) } td {
                                @match &a.answer {
                                    Ok(Some(f)) => { "order " (f.order_number) ", status " (if f.status.is_empty() { "(none)" } else { f.status.as_str() }) ", released " (f.created_at.to_rfc3339()) },
                                    Ok(None) => "not found at Stitch",
                                    Err(e) => span.problem { (e) },
                                }
                            } }
                        } }
                    }
                },
            }
        }
        @if !in_stitch.is_empty() {
            h2 { "In Stitch now" }
            table.list #in-stitch {
                thead { tr { th { "account" } th { "sales order" } th { "order date" } th { "open fulfillments (status, released)" } } }
                tbody { @for a in &in_stitch {
                    tr {
                        td { (a.account) }
                        @if let Some(why) = &a.error {
                            td colspan="3" .problem { (why) }
                        } @else {
                            td { (a.order.as_ref().map_or("not in Stitch", |o| o.0.as_str())) }
                            td { (a.order.as_ref().map_or("", |o| o.1.as_str())) }
                            td { @if a.fulfillments.is_empty() { "none open" } @else {
                                @for (id, status, at) in &a.fulfillments {
                                    div { (id) " (" (if status.is_empty() { "no status" } else { status.as_str() }) ", " (at) ")" }
                                }
                            } }
                        }
                    }
                } }
            }
        }
    };
    Ok(Html(layout(&st, Some(&sid), "Lookup", body).into_string()))
}

// ---- forms ---------------------------------------------------------------------------------------

pub async fn upload_form(
    AxState(st): AxState<Arc<State>>,
    Extension(sid): Extension<Sid>,
    Query(q): Params,
) -> Html<String> {
    let accounts: Vec<&str> = st.config.accounts.iter().map(|a| a.name.as_str()).collect();
    let body = html! {
        (notice(&q))
        p { "Send a corrected error file (or any file) back: it is written into the account's inbound folder for its kind under its own name, never over an existing file." }
        @if !st.token_configured() { p.problem { (super::auth::NO_TOKEN) } }
        form.upload method="post" action="/upload" enctype="multipart/form-data" hx-boost="false" {
            input type="hidden" name="csrf" value=(sid.csrf);
            label { "account "
                select name="account" required { @for a in &accounts { option value=(a) { (a) } } }
            }
            label { "kind "
                select name="kind" required { @for k in ["orders", "inventory", "shipments"] { option value=(k) { (k) } } }
            }
            label { "file " input type="file" name="file" required; }
            @if !sid.authed && st.token_configured() {
                label { "console token " input type="password" name="token" autocomplete="off"; }
            }
            button type="submit" { "Upload" }
        }
    };
    Html(layout(&st, Some(&sid), "Upload a file", body).into_string())
}

pub async fn login_form(
    AxState(st): AxState<Arc<State>>,
    Extension(sid): Extension<Sid>,
    Query(q): Params,
) -> Html<String> {
    let next = param(&q, "next").filter(|n| super::actions::safe_next(n)).unwrap_or("/").to_string();
    let body = html! {
        (notice(&q))
        @if !st.token_configured() { p.problem { (super::auth::NO_TOKEN) } } @else if sid.authed {
            p { "Signed in as " (st.label) "." }
        } @else {
            form.login method="post" action="/login" {
                input type="hidden" name="csrf" value=(sid.csrf);
                input type="hidden" name="next" value=(next);
                label { "console token " input type="password" name="token" autocomplete="off" required autofocus; }
                button type="submit" { "Sign in" }
            }
        }
    };
    Html(layout(&st, Some(&sid), "Sign in", body).into_string())
}
