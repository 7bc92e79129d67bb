//! Why an account needs a person, and the ledger's record of it: the vocabulary of the "needs
//! attention" state, shared by the ledger (which stores it) and `engine/attention.rs` (which
//! decides when to enter and clear it).

use std::fmt;

/// Why an account needs a person. The `as_str` names are the contract of the
/// `stitch_bridge_account_attention{reason}` metric, `status` and `run --json`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    HostKeyUnknown,
    HostKeyChanged,
    HostKeyRevoked,
    SftpAuth,
    DropMissing,
    DropSymlink,
    Permission,
    StitchRedirect,
    /// The X12 partner's 997 rejected one of our 940s.
    X12Rejected,
    /// A 940 of ours has no 997 after `ack_hours`.
    X12Unacknowledged,
}

impl Reason {
    pub const ALL: [Reason; 10] = [
        Reason::HostKeyUnknown,
        Reason::HostKeyChanged,
        Reason::HostKeyRevoked,
        Reason::SftpAuth,
        Reason::DropMissing,
        Reason::DropSymlink,
        Reason::Permission,
        Reason::StitchRedirect,
        Reason::X12Rejected,
        Reason::X12Unacknowledged,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Reason::HostKeyUnknown => "host_key_unknown",
            Reason::HostKeyChanged => "host_key_changed",
            Reason::HostKeyRevoked => "host_key_revoked",
            Reason::SftpAuth => "sftp_auth",
            Reason::DropMissing => "drop_missing",
            Reason::DropSymlink => "drop_symlink",
            Reason::Permission => "permission",
            Reason::StitchRedirect => "stitch_redirect",
            Reason::X12Rejected => "x12_rejected",
            Reason::X12Unacknowledged => "x12_unacknowledged",
        }
    }

    pub fn parse(s: &str) -> Option<Reason> {
        Reason::ALL.into_iter().find(|r| r.as_str() == s)
    }

    /// How many cycles in a row must meet the problem before it is a person's: a permission
    /// error can be a folder being set up at that moment; the others cannot fix themselves.
    pub fn strikes(self) -> u32 {
        match self {
            Reason::Permission => 2,
            _ => 1,
        }
    }

    /// Whether the account stops while it needs attention. The X12 acknowledgement problems
    /// concern files already sent: the account goes on working, and says so.
    pub fn stops(self) -> bool {
        !matches!(self, Reason::X12Rejected | Reason::X12Unacknowledged)
    }

    /// What the operator should do, with the account's real name in every command.
    pub fn what_to_do(self, account: &str) -> String {
        match self {
            Reason::HostKeyUnknown => format!(
                "Confirm the server's host key fingerprint with the warehouse (by phone or another channel you trust), then run:\n    stitch-bridge trust {account}"
            ),
            Reason::HostKeyChanged => format!(
                "The server presented a different host key than the one recorded. This can be an attack (man-in-the-middle)\nor a new server. Ask the warehouse whether they changed their server key and confirm the new fingerprint;\nonly then run:\n    stitch-bridge trust {account} --replace"
            ),
            Reason::HostKeyRevoked => format!(
                "The server's key is marked @revoked in known_hosts. Ask the warehouse for its new server key; once confirmed, run:\n    stitch-bridge trust {account}"
            ),
            Reason::SftpAuth => "The sFTP server refused the account's credentials, or the private key could not be loaded.\nCheck sftp_key_file / sftp_password_env / sftp_key_passphrase_env and that the warehouse still\nauthorises the key or password. Test with:\n    stitch-bridge test ".to_string() + account,
            Reason::DropMissing => format!(
                "The drop folder does not exist or is not a folder. Create it (or correct `drop` in the configuration), then run:\n    stitch-bridge test {account}"
            ),
            Reason::DropSymlink => "A folder inside the drop is a symbolic link; the bridge never follows links below the drop root.\nReplace the link with a real folder (and check who created it: whoever can write to the drop\ncould use links to read or plant files elsewhere).".to_string(),
            Reason::Permission => "The bridge is not allowed to read or write a folder or file in the drop, and this happened on\nconsecutive runs. Fix the owner or mode of the path named above for the user the bridge runs as.".to_string(),
            Reason::X12Rejected => format!(
                "The warehouse's 997 rejected the 940 files named above: the warehouse did not take those orders.\nRead the 997 in the archive, correct the order (or ask the warehouse what it needs), and have it\nsent again; then dismiss this with:\n    stitch-bridge resume {account}"
            ),
            Reason::X12Unacknowledged => format!(
                "The warehouse has not acknowledged (997) the 940 files named above within ack_hours. Ask the\nwarehouse whether it received them; a 997 arriving later clears this. To dismiss it, run:\n    stitch-bridge resume {account}"
            ),
            Reason::StitchRedirect => "The Stitch URL answered with a redirect, which is never followed (it would carry the access token\nelsewhere). Correct `stitch_url` in the configuration to the address that answers directly.".to_string(),
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The recorded state of an account (the ledger's `attention` row).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Recorded {
    pub reason: Reason,
    pub message: String,
    pub since: String,
    pub strikes: u32,
}

impl Recorded {
    /// Announced (alert fired) once its strikes reached the reason's threshold.
    pub fn announced(&self) -> bool {
        self.strikes >= self.reason.strikes()
    }
}
