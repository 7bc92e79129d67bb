//! The console's actions (POST): resume, clear attention, reprocess, upload, sign in and out.
//! Each one first passes [`State::check_action`] (token, same origin, CSRF), and each change is
//! recorded in `console_actions` with the token's label.

use super::{auth, blocking, errfile, Fail, Sid, State};
use axum::extract::{Multipart, Path, State as AxState};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Form};
use std::collections::BTreeMap;
use std::sync::Arc;

type Fields = Form<BTreeMap<String, String>>;

fn field<'a>(f: &'a BTreeMap<String, String>, k: &str) -> Option<&'a str> {
    f.get(k).map(String::as_str)
}

/// 303 to `to` (a path of ours).
fn see_other(to: &str) -> Response {
    let mut r = StatusCode::SEE_OTHER.into_response();
    if let Ok(v) = HeaderValue::from_str(to) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r
}

/// A redirect target from a form: a path on this console, never another host.
pub(crate) fn safe_next(next: &str) -> bool {
    next.starts_with('/') && !next.starts_with("//") && !next.contains('\\') && !next.chars().any(char::is_control)
}

fn configured<'a>(st: &'a State, name: &str) -> Result<&'a crate::config::Account, Fail> {
    st.config.account(name).ok_or_else(|| Fail::NotFound(format!("No account named {name:?} is configured.")))
}

pub async fn resume(
    AxState(st): AxState<Arc<State>>,
    Extension(sid): Extension<Sid>,
    headers: HeaderMap,
    Path(name): Path<String>,
    Form(f): Fields,
) -> Result<Response, Fail> {
    st.check_action(&headers, &sid, field(&f, "csrf"), field(&f, "token"))?;
    configured(&st, &name)?;
    let s = st.clone();
    let n = name.clone();
    let r = blocking(move || {
        s.with_ledger(|l| -> crate::ledger::Result<_> {
            let acct = s.config.account(&n).expect("checked above");
            let r = super::resume_account(acct, l)?;
            let detail = format!("was halted: {}; X12 problems dismissed: {}", r.was_halted, r.dismissed);
            l.record_action(&s.label, &n, "resume", &n, &detail)?;
            Ok(r)
        })
    })
    .await???;
    let done = if r.was_halted { "resumed" } else { "not-halted" };
    Ok(see_other(&format!("/?done={done}")))
}

pub async fn clear(
    AxState(st): AxState<Arc<State>>,
    Extension(sid): Extension<Sid>,
    headers: HeaderMap,
    Path(name): Path<String>,
    Form(f): Fields,
) -> Result<Response, Fail> {
    st.check_action(&headers, &sid, field(&f, "csrf"), field(&f, "token"))?;
    configured(&st, &name)?;
    let s = st.clone();
    let n = name.clone();
    let was = blocking(move || {
        s.with_ledger(|l| -> crate::ledger::Result<_> {
            let before = l.attention(&n)?;
            let was = l.clear_attention(&n)?;
            let detail = match before {
                Some(r) => format!("was: {} ({})", r.reason.as_str(), r.message),
                None => "did not need attention".into(),
            };
            l.record_action(&s.label, &n, "clear-attention", &n, &detail)?;
            Ok(was)
        })
    })
    .await???;
    Ok(see_other(if was { "/?done=cleared" } else { "/?done=not-attention" }))
}

/// The inbound folder of a file kind as the ledger names it.
fn inbound_folder<'a>(acct: &'a crate::config::Account, kind: &str) -> Option<&'a str> {
    match crate::formats::Kind::ALL.into_iter().find(|k| k.as_str() == kind) {
        Some(k) => Some(acct.folders.inbound(k)),
        None if matches!(kind, "x12" | "edi") => Some(&acct.folders.inbound_edi),
        None => None,
    }
}

/// `STEM~reprocess-ID.EXT` (the extensions, wrapping ones included, kept), `-N` added for
/// the `n`th attempt; the stem is shortened so the name fits the drop's limit.
pub(crate) fn reprocess_name(original: &str, id: i64, n: u32) -> String {
    let (stem, ext) = match original.get(1..).and_then(|r| r.find('.')) {
        Some(i) => original.split_at(i + 1),
        None => (original, ""),
    };
    let tag = if n == 0 { format!("~reprocess-{id}") } else { format!("~reprocess-{id}-{n}") };
    let room = 200usize.saturating_sub(tag.len() + ext.len());
    format!("{}{tag}{ext}", crate::drop::truncate_bytes(stem, room))
}

pub async fn reprocess(
    AxState(st): AxState<Arc<State>>,
    Extension(sid): Extension<Sid>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(f): Fields,
) -> Result<Response, Fail> {
    st.check_action(&headers, &sid, field(&f, "csrf"), field(&f, "token"))?;
    let id: i64 = id.parse().map_err(|_| Fail::NotFound("No such file.".into()))?;
    let s = st.clone();
    blocking(move || reprocess_blocking(&s, id)).await??;
    Ok(see_other(&format!("/files/{id}?done=reprocessed")))
}

fn reprocess_blocking(st: &State, id: i64) -> Result<String, Fail> {
    let f = st.with_ledger(|l| l.file(id))??.ok_or_else(|| Fail::NotFound("No such file.".into()))?;
    let archived = f.final_path.clone().filter(|_| f.state == crate::ledger::FileState::Archived);
    let Some(archived) = archived else {
        return Err(Fail::Conflict("Only an archived file can be reprocessed.".into()));
    };
    let acct = configured(st, &f.account)?;
    let folder = inbound_folder(acct, &f.kind)
        .ok_or_else(|| Fail::Conflict(format!("Files of kind {:?} have no inbound folder.", f.kind)))?;
    let content = errfile::read(acct, &archived).map_err(|e| Fail::Conflict(format!("Cannot read {archived}: {e}")))?;
    let original = f.path.rsplit('/').next().unwrap_or(&f.path).to_string();
    let mut drop = crate::engine::account::open_drop(acct).map_err(|e| Fail::Internal(e.to_string()))?;
    for n in 0..100 {
        let target = format!("{folder}/{}", reprocess_name(&original, id, n));
        if drop.stat(&target).map_err(|e| Fail::Internal(e.to_string()))?.is_some() {
            continue;
        }
        let mark = format!("reprocess:{}:{target}", f.account);
        // The mark first: the engine must never see the copy without knowing what it is.
        st.with_ledger(|l| l.set_mark(&mark, &id.to_string()))??;
        match drop.write_atomic(&target, &mut content.as_slice()) {
            Ok(()) => {
                let detail = format!("queued again as {target}");
                st.with_ledger(|l| {
                    l.record_action(&st.label, &f.account, "reprocess", &format!("file {id}"), &detail)
                })??;
                return Ok(target);
            }
            Err(e) => {
                st.with_ledger(|l| l.delete_mark(&mark))??;
                if e.kind != crate::drop::DropErrorKind::AlreadyExists {
                    return Err(Fail::Internal(format!("writing {target}: {e}")));
                }
            }
        }
    }
    Err(Fail::Conflict("No free name for the reprocessed copy.".into()))
}

/// An uploaded file's name as it will sit in `inbound/<kind>/`: its last path component,
/// characters outside letters, digits, ` .-_~()` replaced by `_`, no leading dot (hidden
/// names are never taken), at most 200 bytes.
pub(crate) fn upload_name(given: &str) -> Option<String> {
    let base = given.rsplit(['/', '\\']).next().unwrap_or("");
    let mut name: String =
        base.chars().map(|c| if c.is_alphanumeric() || " .-_~()".contains(c) { c } else { '_' }).collect();
    name = name.trim().trim_start_matches('.').to_string();
    let name = crate::drop::truncate_bytes(&name, 200).to_string();
    (crate::drop::check_name(&name).is_ok() && !crate::drop::is_ignored_name(&name)).then_some(name)
}

pub async fn upload(
    AxState(st): AxState<Arc<State>>,
    Extension(sid): Extension<Sid>,
    headers: HeaderMap,
    mut form: Multipart,
) -> Result<Response, Fail> {
    let bad =
        |e: axum::extract::multipart::MultipartError| Fail::BadRequest(format!("The upload is not a usable form: {e}"));
    let mut fields = BTreeMap::new();
    let mut file: Option<(String, Vec<u8>)> = None;
    while let Some(part) = form.next_field().await.map_err(bad)? {
        let name = part.name().unwrap_or("").to_string();
        if name == "file" {
            let filename = part.file_name().unwrap_or("").to_string();
            file = Some((filename, part.bytes().await.map_err(bad)?.to_vec()));
        } else if fields.len() < 16 {
            fields.insert(name, part.text().await.map_err(bad)?);
        }
    }
    st.check_action(&headers, &sid, field(&fields, "csrf"), field(&fields, "token"))?;
    let account = field(&fields, "account").unwrap_or("").to_string();
    let acct = configured(&st, &account)?;
    let kind = field(&fields, "kind").and_then(|k| crate::formats::Kind::ALL.into_iter().find(|x| x.as_str() == k));
    let Some(kind) = kind else {
        return Err(Fail::BadRequest("The kind must be inventory, orders or shipments.".into()));
    };
    let Some((given, bytes)) = file else { return Err(Fail::BadRequest("No file was sent.".into())) };
    let name = upload_name(&given).ok_or_else(|| {
        Fail::BadRequest("The file's name cannot be used on the drop; rename it (e.g. fixed.csv).".into())
    })?;
    let target = format!("{}/{name}", acct.folders.inbound(kind));
    let s = st.clone();
    blocking(move || -> Result<(), Fail> {
        let acct = s.config.account(&account).expect("checked above");
        let mut drop = crate::engine::account::open_drop(acct).map_err(|e| Fail::Internal(e.to_string()))?;
        match drop.write_atomic(&target, &mut bytes.as_slice()) {
            Ok(()) => {}
            Err(e) if e.kind == crate::drop::DropErrorKind::AlreadyExists => {
                return Err(Fail::Conflict(format!(
                    "{target} already exists on the drop; nothing was overwritten. Rename the file and upload it again."
                )))
            }
            Err(e) => return Err(Fail::Internal(format!("writing {target}: {e}"))),
        }
        let detail = format!("{} bytes", bytes.len());
        s.with_ledger(|l| l.record_action(&s.label, &account, "upload", &target, &detail))??;
        Ok(())
    })
    .await??;
    Ok(see_other("/upload?done=uploaded"))
}

pub async fn login(
    AxState(st): AxState<Arc<State>>,
    Extension(sid): Extension<Sid>,
    headers: HeaderMap,
    Form(f): Fields,
) -> Result<Response, Fail> {
    if !st.token_configured() {
        return Err(Fail::Forbidden(auth::NO_TOKEN.into()));
    }
    auth::same_origin(&headers)?;
    let csrf_ok = field(&f, "csrf").is_some_and(|c| {
        use subtle::ConstantTimeEq;
        bool::from(c.as_bytes().ct_eq(sid.csrf.as_bytes()))
    });
    if !csrf_ok {
        return Err(Fail::Forbidden("The sign-in form has expired: reload it and try again.".into()));
    }
    if !field(&f, "token").is_some_and(|t| st.token_matches(t)) {
        return Err(Fail::Unauthorized("That is not the console token.".into()));
    }
    // A new session id on sign-in: one fixed before it is worth nothing after.
    let fresh = hex::encode(rand::random::<[u8; 16]>());
    let next = field(&f, "next").filter(|n| safe_next(n)).unwrap_or("/");
    let to = if next == "/" { "/?done=signed-in".to_string() } else { next.to_string() };
    let mut r = see_other(&to);
    r.headers_mut().append(header::SET_COOKIE, auth::sid_cookie(&fresh));
    r.headers_mut().append(header::SET_COOKIE, auth::auth_cookie(Some(&st.auth_cookie_value(&fresh))));
    Ok(r)
}

pub async fn logout(
    AxState(st): AxState<Arc<State>>,
    Extension(sid): Extension<Sid>,
    headers: HeaderMap,
    Form(f): Fields,
) -> Result<Response, Fail> {
    auth::same_origin(&headers)?;
    let _ = &st;
    let csrf_ok = field(&f, "csrf").is_some_and(|c| {
        use subtle::ConstantTimeEq;
        bool::from(c.as_bytes().ct_eq(sid.csrf.as_bytes()))
    });
    if !csrf_ok {
        return Err(Fail::Forbidden("The form has expired: reload the page and try again.".into()));
    }
    let mut r = see_other("/login?done=signed-out");
    r.headers_mut().append(header::SET_COOKIE, auth::auth_cookie(None));
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reprocess_names_keep_extensions() {
        assert_eq!(reprocess_name("orders.csv", 7, 0), "orders~reprocess-7.csv");
        assert_eq!(reprocess_name("orders.csv.pgp", 7, 2), "orders~reprocess-7-2.csv.pgp");
        assert_eq!(reprocess_name("README", 1, 0), "README~reprocess-1");
    }

    #[test]
    fn upload_names_are_sanitised() {
        assert_eq!(upload_name("C:\\Users\\x\\fixed errors.csv").as_deref(), Some("fixed errors.csv"));
        assert_eq!(upload_name("../../etc/passwd").as_deref(), Some("passwd"));
        assert_eq!(upload_name("<img src=x>.csv").as_deref(), Some("_img src_x_.csv"));
        assert_eq!(upload_name(".hidden.csv").as_deref(), Some("hidden.csv"));
        assert_eq!(upload_name("x.csv.part"), None);
        assert_eq!(upload_name(""), None);
    }

    #[test]
    fn next_stays_on_this_console() {
        assert!(safe_next("/files?page=2"));
        assert!(!safe_next("//evil.example/"));
        assert!(!safe_next("https://evil.example/"));
        assert!(!safe_next("/\\evil.example"));
    }
}
