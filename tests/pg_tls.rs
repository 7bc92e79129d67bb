//! TLS to a PostgreSQL ledger against a real server: `verify-full` with the server's CA
//! connects encrypted, with another CA it fails naming the host and the reason, `require`
//! encrypts without a CA, and a server without TLS is refused unless `sslmode = "disable"`.

#[path = "support_pg/mod.rs"]
mod support_pg;

use stitch_bridge::ledger::{Ledger, LedgerError, LedgerLocation, PgTls, SslMode};

fn with_tls(loc: &LedgerLocation, tls: PgTls) -> LedgerLocation {
    let LedgerLocation::Postgres { url, password_env, .. } = loc else { panic!("not PostgreSQL") };
    LedgerLocation::Postgres { url: url.clone(), password_env: password_env.clone(), tls }
}

/// (encrypted, all) ledger connections to `loc`'s database, as the server sees them.
fn ledger_sessions(pg: &support_pg::PgServer, loc: &LedgerLocation) -> (i64, i64) {
    let LedgerLocation::Postgres { url, .. } = loc else { panic!("not PostgreSQL") };
    let db = url.rsplit('/').next().unwrap();
    let row = &pg.connect(loc).rows(&format!(
        "SELECT COUNT(*) FILTER (WHERE s.ssl), COUNT(*) FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid)
         WHERE a.datname = '{db}' AND a.application_name = 'stitch-bridge'"
    ))[0];
    (row.get(0), row.get(1))
}

fn host_of(url: &str) -> String {
    url.split('@').nth(1).unwrap().split('/').next().unwrap().to_string()
}

/// The ledger opens, and every session it holds on the server is encrypted (`pg_stat_ssl`).
fn opens_encrypted(pg: &support_pg::PgServer, loc: &LedgerLocation) {
    let l = Ledger::open_at(loc).unwrap_or_else(|e| panic!("{e}"));
    l.id().unwrap();
    let (encrypted, all) = ledger_sessions(pg, loc);
    assert!(all >= 1 && encrypted == all, "{encrypted} of {all} ledger sessions encrypted");
}

#[test]
fn verify_full_with_the_servers_ca_connects_encrypted() {
    let Some(pg) = support_pg::server("verify_full_with_the_servers_ca_connects_encrypted") else { return };
    let loc = pg.fresh();
    let LedgerLocation::Postgres { tls, .. } = &loc else { unreachable!() };
    assert_eq!(tls.sslmode, SslMode::VerifyFull);
    opens_encrypted(pg, &loc);
}

#[test]
fn verify_full_with_another_ca_fails_naming_the_host_and_the_reason() {
    let Some(pg) = support_pg::server("verify_full_with_another_ca_fails_naming_the_host_and_the_reason") else {
        return;
    };
    let other_ca = pg.ca.with_file_name("other-ca.crt");
    let loc = with_tls(&pg.fresh(), PgTls { sslmode: SslMode::VerifyFull, ssl_ca_file: Some(other_ca.clone()) });
    let LedgerLocation::Postgres { url, .. } = &loc else { unreachable!() };
    match Ledger::open_at(&loc) {
        Err(e @ LedgerError::Tls { .. }) => {
            let text = e.to_string();
            assert!(text.contains(&host_of(url)), "names the host: {text}");
            assert!(text.contains("verify-full") && text.contains("certificate"), "says why: {text}");
            assert!(text.contains(&other_ca.display().to_string()), "names the CA it trusted: {text}");
            if let Ok(pw) = std::env::var(support_pg::PASSWORD_ENV) {
                assert!(!format!("{e} {e:?}").contains(&pw), "password leaked: {text}");
            }
        }
        Err(other) => panic!("expected a TLS error, got {other}"),
        Ok(_) => panic!("a server whose certificate the CA did not sign must not be trusted"),
    }
}

#[test]
fn a_missing_ca_file_is_a_config_error_naming_it() {
    let Some(pg) = support_pg::server("a_missing_ca_file_is_a_config_error_naming_it") else { return };
    let missing = pg.ca.with_file_name("no-such-ca.crt");
    let loc = with_tls(&pg.fresh(), PgTls { sslmode: SslMode::VerifyFull, ssl_ca_file: Some(missing.clone()) });
    match Ledger::open_at(&loc) {
        Err(e @ LedgerError::Config { .. }) => assert!(e.to_string().contains(&missing.display().to_string()), "{e}"),
        Err(other) => panic!("expected a config error, got {other}"),
        Ok(_) => panic!("must not open"),
    }
}

#[test]
fn require_encrypts_without_a_ca() {
    let Some(pg) = support_pg::server("require_encrypts_without_a_ca") else { return };
    let loc = with_tls(&pg.fresh(), PgTls { sslmode: SslMode::Require, ssl_ca_file: None });
    opens_encrypted(pg, &loc);
}

#[test]
fn a_server_without_tls_is_refused_unless_sslmode_is_disable() {
    if support_pg::server("a_server_without_tls_is_refused_unless_sslmode_is_disable").is_none() {
        return;
    }
    let Some(plain) = support_pg::OwnServer::start(false) else { return };
    let host = host_of(&plain.url);
    for (mode, ca) in [(SslMode::Require, None), (SslMode::VerifyFull, support_pg::server("").map(|s| s.ca.clone()))] {
        let loc = LedgerLocation::Postgres {
            url: plain.url.clone(),
            password_env: None,
            tls: PgTls { sslmode: mode, ssl_ca_file: ca },
        };
        match Ledger::open_at(&loc) {
            Err(e @ LedgerError::Tls { .. }) => {
                let text = e.to_string();
                assert!(text.contains(&host) && text.contains(mode.as_str()), "{text}");
                assert!(text.contains("does not support TLS"), "says why: {text}");
            }
            Err(other) => panic!("{mode:?}: expected a TLS error, got {other}"),
            Ok(_) => panic!("{mode:?}: a server without TLS must be refused"),
        }
    }
    let loc = LedgerLocation::Postgres {
        url: plain.url.clone(),
        password_env: None,
        tls: PgTls { sslmode: SslMode::Disable, ssl_ca_file: None },
    };
    Ledger::open_at(&loc).unwrap_or_else(|e| panic!("sslmode = disable: {e}")).id().unwrap();
}
