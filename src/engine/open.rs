//! Opening an account's sFTP drop from its configuration: the one place that joins `config`
//! and `drop`, so that `drop` knows nothing of the configuration (and `config`, which names a
//! ledger, never reaches `drop` through it).

/// Why an account's sFTP settings cannot be used yet. Never carries a secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SftpSetupError {
    #[error("account {0} does not use an sftp:// drop")]
    NotSftp(String),
    #[error("environment variable {0} is not set")]
    EnvUnset(String),
    #[error("no sFTP credentials configured")]
    NoCredentials,
}

/// The sFTP settings of an account, with secrets read from the environment now (and kept
/// out of every log and message).
fn sftp_config(acct: &crate::config::Account) -> Result<crate::drop::sftp::SftpConfig, SftpSetupError> {
    use crate::config::DropLocation;
    let (DropLocation::Sftp { user, host, port, path }, Some(s)) = (&acct.drop, &acct.sftp) else {
        return Err(SftpSetupError::NotSftp(acct.name.clone()));
    };
    let env = |var: &str| std::env::var(var).map_err(|_| SftpSetupError::EnvUnset(var.to_string()));
    let auth = match (&s.key_file, &s.password_env) {
        (Some(k), _) => crate::drop::sftp::SftpAuth::Key {
            path: k.clone(),
            passphrase: s.key_passphrase_env.as_deref().map(env).transpose()?.map(crate::drop::sftp::Secret::new),
        },
        (None, Some(p)) => crate::drop::sftp::SftpAuth::Password(crate::drop::sftp::Secret::new(env(p)?)),
        (None, None) => return Err(SftpSetupError::NoCredentials),
    };
    let mut cfg = crate::drop::sftp::SftpConfig::new(host, *port, user, path, auth, s.known_hosts.clone());
    cfg.allow_legacy_ssh_rsa = s.allow_legacy_ssh_rsa;
    cfg.op_timeout = acct.timeout.max(std::time::Duration::from_secs(10));
    cfg.max_sessions = s.max_sessions;
    cfg.file_mode = acct.file_mode;
    Ok(cfg)
}

/// Open an sFTP drop for an account (host key verified before any credential is sent).
pub fn open_sftp(acct: &crate::config::Account) -> crate::drop::DropResult<Box<dyn crate::drop::Transport>> {
    // An unset variable may be set by the next run (as an outage is): `Unavailable`.
    let cfg = sftp_config(acct).map_err(|e| {
        crate::drop::DropError::new("", crate::drop::DropErrorKind::Unavailable, std::io::Error::other(e))
            .in_account(&acct.name)
    })?;
    match crate::drop::sftp::SftpDrop::connect(cfg) {
        Ok(d) => Ok(Box::new(d)),
        Err(e) => Err(e.in_account(&acct.name)),
    }
}
