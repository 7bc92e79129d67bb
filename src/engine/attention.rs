//! The "needs attention" state: problems a person must fix, told apart from outages.
//!
//! A changed host key, refused sFTP credentials, a missing or linked drop folder, a permission
//! error that persists, a Stitch URL that redirects: retrying cannot fix any of them, and calling
//! them "pending, will resume next run" let cron retry forever in silence. Such a cycle stops the
//! account with a [`Reason`]; the state is kept in the ledger so the alert hook fires once when
//! the account enters it and once when it clears, however many runs or polls come between, and
//! `ALERT-<account>.txt` says what to do.

pub use crate::model::{Reason, Recorded};

/// One problem a person must fix: its reason and what the bridge saw.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Attention {
    pub reason: Reason,
    pub message: String,
}

impl Attention {
    pub fn new(reason: Reason, message: impl Into<String>) -> Self {
        Attention { reason, message: message.into() }
    }
}

/// The text of `ALERT-<account>.txt` and of the alert hook for an account that needs attention.
pub fn alert_text(account: &str, a: &Attention, at: &str) -> String {
    format!(
        "stitch-bridge: account \"{account}\" NEEDS ATTENTION since {at} ({reason})\n\n\
         {message}\n\n\
         {effect}\n\n\
         What to do:\n{todo}\n",
        reason = a.reason,
        message = a.message,
        todo = indent(&a.reason.what_to_do(account)),
        effect = if a.reason.stops() {
            "Nothing was sent and no file was moved for this account. Every later run tries again and\n\
             says the same until this is fixed; the alert is raised once, and once more when it clears."
        } else {
            "The account goes on working: files are still read and orders still sent. The alert is raised\n\
             once, and once more when it clears."
        },
    )
}

fn indent(s: &str) -> String {
    s.lines().map(|l| format!("  {l}")).collect::<Vec<_>>().join("\n")
}

/// What a cycle's outcome means for the recorded state: the pure rule behind "alert once when
/// entering, once when clearing". `recorded` is the ledger's row for the account, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transition {
    /// Nothing to record or announce.
    Quiet,
    /// A strike below the threshold: remember it, stay pending (exit 4).
    Strike { strikes: u32 },
    /// The account enters (or changes) the state: record it, write the alert file, fire the hook.
    Enter { strikes: u32 },
    /// Still the same problem, already announced.
    Still { strikes: u32 },
    /// The cycle got past every point where the problem arose: clear it and announce that.
    Clear { was: Reason, announced: bool },
}

/// `now`: the problem this cycle met, if any; `cleared`: whether the cycle got far enough to
/// know that earlier problems are gone (a cycle stopped by an outage first proves nothing).
pub fn transition(recorded: Option<&Recorded>, now: Option<&Attention>, cleared: bool) -> Transition {
    match (recorded, now) {
        (None, None) => Transition::Quiet,
        (Some(r), None) if cleared => Transition::Clear { was: r.reason, announced: r.announced() },
        (Some(_), None) => Transition::Quiet,
        (rec, Some(a)) => {
            let strikes = match rec {
                Some(r) if r.reason == a.reason => r.strikes.saturating_add(1),
                _ => 1,
            };
            let was_announced = rec.is_some_and(|r| r.reason == a.reason && r.announced());
            if strikes < a.reason.strikes() {
                Transition::Strike { strikes }
            } else if was_announced {
                Transition::Still { strikes }
            } else {
                Transition::Enter { strikes }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(reason: Reason, strikes: u32) -> Recorded {
        Recorded { reason, message: String::new(), since: String::new(), strikes }
    }

    #[test]
    fn the_alert_fires_once_on_entering_and_once_on_clearing() {
        let changed = Attention::new(Reason::HostKeyChanged, "key changed");
        assert_eq!(transition(None, Some(&changed), false), Transition::Enter { strikes: 1 });
        let r = rec(Reason::HostKeyChanged, 1);
        assert_eq!(transition(Some(&r), Some(&changed), false), Transition::Still { strikes: 2 });
        // An outage before the point where the problem arose proves nothing either way.
        assert_eq!(transition(Some(&r), None, false), Transition::Quiet);
        assert_eq!(
            transition(Some(&r), None, true),
            Transition::Clear { was: Reason::HostKeyChanged, announced: true }
        );
        assert_eq!(transition(None, None, true), Transition::Quiet);
    }

    #[test]
    fn a_permission_error_needs_a_second_cycle_and_a_new_reason_is_announced() {
        let perm = Attention::new(Reason::Permission, "denied");
        assert_eq!(transition(None, Some(&perm), false), Transition::Strike { strikes: 1 });
        let once = rec(Reason::Permission, 1);
        assert!(!once.announced());
        assert_eq!(transition(Some(&once), Some(&perm), false), Transition::Enter { strikes: 2 });
        // A strike that cleared was never announced: clearing it says nothing to anyone.
        assert_eq!(
            transition(Some(&once), None, true),
            Transition::Clear { was: Reason::Permission, announced: false }
        );
        // Another problem replaces the recorded one and is announced.
        let missing = Attention::new(Reason::DropMissing, "gone");
        assert_eq!(
            transition(Some(&rec(Reason::HostKeyChanged, 3)), Some(&missing), false),
            Transition::Enter { strikes: 1 }
        );
    }

    #[test]
    fn every_reason_round_trips_and_names_the_account_where_a_command_helps() {
        for r in Reason::ALL {
            assert_eq!(Reason::parse(r.as_str()), Some(r));
        }
        assert!(Reason::HostKeyChanged.what_to_do("wh").contains("stitch-bridge trust wh --replace"));
        assert!(Reason::HostKeyUnknown.what_to_do("wh").contains("stitch-bridge trust wh"));
        assert!(Reason::SftpAuth.what_to_do("wh").contains("stitch-bridge test wh"));
    }
}
