//! `/files/{id}/original|result|errors`: a file of the ledger's, by id only. The path comes from
//! the ledger row and is opened through the account's drop transport, so a request can name
//! neither a path nor a file the ledger did not record.

use super::{blocking, errfile, Fail, State};
use axum::extract::{Path, State as AxState};
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use std::sync::Arc;

pub async fn download(
    AxState(st): AxState<Arc<State>>,
    Path((id, which)): Path<(String, String)>,
) -> Result<Response, Fail> {
    let missing = || Fail::NotFound("No such file.".into());
    let id: i64 = id.parse().map_err(|_| missing())?;
    let s = st.clone();
    let f = blocking(move || s.with_ledger(|l| l.file(id))).await???.ok_or_else(missing)?;
    let path = match which.as_str() {
        // Where the original is now: archived or rejected, else still in its inbound folder.
        "original" => {
            f.final_path.clone().filter(|_| f.state != crate::ledger::FileState::Processing).unwrap_or(f.path.clone())
        }
        "result" => f.result_path.clone().ok_or_else(missing)?,
        "errors" => f.errors_path.clone().ok_or_else(missing)?,
        _ => return Err(missing()),
    };
    let s = st.clone();
    let p = path.clone();
    let bytes = blocking(move || {
        let acct = errfile::account(&s.config, &f.account)?;
        errfile::read(acct, &p)
    })
    .await?
    .map_err(|e| match e {
        errfile::ReadError::Drop(d) if d.kind == crate::drop::DropErrorKind::NotFound => {
            Fail::NotFound(format!("The file is no longer on the drop: {d}"))
        }
        other => Fail::Internal(other.to_string()),
    })?;
    let name = safe_filename(path.rsplit('/').next().unwrap_or("file"));
    let disposition = format!("attachment; filename=\"{name}\"");
    Ok((
        [
            (header::CONTENT_TYPE, HeaderValue::from_static("application/octet-stream")),
            (
                header::CONTENT_DISPOSITION,
                HeaderValue::from_str(&disposition).map_err(|e| Fail::Internal(e.to_string()))?,
            ),
        ],
        bytes,
    )
        .into_response())
}

/// A name any browser saves as given: ASCII letters, digits, `.`, `-`, `_` and `~`; anything
/// else becomes `_`, a leading dot too; at most 150 bytes.
pub fn safe_filename(name: &str) -> String {
    let mut out: String = name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '~') { c } else { '_' })
        .take(150)
        .collect();
    if out.starts_with('.') {
        out.replace_range(..1, "_");
    }
    if out.is_empty() {
        out.push_str("file");
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn filenames_are_safe() {
        assert_eq!(super::safe_filename("<img src=x onerror=alert(1)>.csv"), "_img_src_x_onerror_alert_1__.csv");
        assert_eq!(super::safe_filename(".hidden\"\r\n"), "_hidden___");
        assert_eq!(super::safe_filename(""), "file");
    }
}
