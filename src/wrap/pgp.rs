//! OpenPGP: inbound `.pgp`/`.gpg`/`.asc` files decrypted with the account's secret key (and
//! their signatures checked against the partner's public key), outbound files encrypted to the
//! partner (and signed with our key). Built on rPGP, which does the packet and crypto layers but
//! leaves the semantics of keys (expiry, revocation, key flags) to its users; those live here
//! (`KeyStanding`), so a key that gpg calls expired or revoked is refused here too.
//!
//! Decryption streams: memory stays flat in the file size. For SEIPDv1 (what GnuPG 2.2 writes)
//! that means rPGP's `Seipdv1ReadMode::Streaming`: plaintext is released before the MDC at the
//! end is checked. The reader therefore reports every verdict found at the end (MDC, AEAD tag,
//! signatures, trailing garbage) as an error from `read()` *before* it ever returns `Ok(0)`, so a
//! consumer that treats only a clean EOF as success never accepts a tampered file.

use ::pgp::composed::{
    DecryptionOptions, Deserializable, Edata, Esk, FullSignaturePacket, Message, MessageBuilder, SignedKeyDetails,
    SignedPublicKey, SignedSecretKey, TheRing,
};
use ::pgp::crypto::hash::HashAlgorithm;
use ::pgp::crypto::public_key::PublicKeyAlgorithm;
use ::pgp::crypto::sym::SymmetricKeyAlgorithm;
use ::pgp::packet::{
    PublicKey, PublicKeyEncryptedSessionKey, PublicSubkey, RevocationCode, Signature, SignatureType, SubpacketData,
};
use ::pgp::types::{
    Fingerprint, KeyDetails, KeyId, Password, S2kParams, SecretParams, Seipdv1ReadMode, SigningKey, StringToKey, Tag,
    VerifyingKey,
};
use std::fmt;
use std::io::{self, BufReader, Cursor, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use super::WrapError;

/// Whether a log record's target is rPGP's. rPGP logs through the `log` crate, which the
/// bridge's subscriber takes in (tracing-subscriber's `tracing-log`), and some of its debug
/// records carry key material: the secret key parser logs the secret part in hex, in the clear
/// for a key without passphrase. The subscriber must drop these records whatever the operator's
/// filter enables (a filter directive is not enough: a more specific one re-enables them), e.g.
/// with `filter_fn(|m| !is_rpgp_log_target(m.target()))`.
pub fn is_rpgp_log_target(target: &str) -> bool {
    target == "pgp" || target.starts_with("pgp::")
}

/// Key files are small; anything bigger is not a key file (and is not read into memory).
const MAX_KEY_FILE_BYTES: u64 = 16 * 1024 * 1024;
/// Compressed packets inside compressed packets: real messages have one level; a deep stack is
/// a decompression bomb or garbage.
const MAX_NESTING: usize = 8;
/// rPGP's error texts can quote packet details; they go into rejection reports, so keep them short.
const MAX_DETAIL_CHARS: usize = 300;

/// Why a key file cannot be used. Raised at config load, so each names the file.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("{}: cannot read the key file: {source}", path.display())]
    Unreadable { path: PathBuf, source: io::Error },
    #[error("{}: not a usable OpenPGP key file: {reason}", path.display())]
    NotAKey { path: PathBuf, reason: String },
    #[error("{}: the secret key {key_id} is protected by a passphrase and none is configured", path.display())]
    PassphraseRequired { path: PathBuf, key_id: String },
    #[error("{}: the passphrase does not unlock the secret key {key_id}", path.display())]
    WrongPassphrase { path: PathBuf, key_id: String },
    #[error("{}: key {key_id} expired on {expired}", path.display())]
    Expired { path: PathBuf, key_id: String, expired: String },
    #[error("{}: key {key_id} is revoked ({reason})", path.display())]
    Revoked { path: PathBuf, key_id: String, reason: String },
    /// Not bound by a valid self-signature: nothing about the key can be trusted.
    #[error("{}: key {key_id} is invalid: {reason}", path.display())]
    Invalid { path: PathBuf, key_id: String, reason: String },
    #[error("{}: key {key_id} cannot decrypt: {reason}", path.display())]
    CannotDecrypt { path: PathBuf, key_id: String, reason: String },
    #[error("{}: key {key_id} cannot encrypt: {reason}", path.display())]
    CannotEncrypt { path: PathBuf, key_id: String, reason: String },
    #[error("{}: key {key_id} cannot sign: {reason}", path.display())]
    CannotSign { path: PathBuf, key_id: String, reason: String },
}

/// The passphrase of our secret key, kept so the key stays locked in memory between uses.
/// Never printed: `Debug` shows `[redacted]` and there is no `Display`.
struct Passphrase(Password);

impl Passphrase {
    /// rPGP consumes a `Password` per signing; a fresh copy of the same (zeroizing) bytes.
    fn password(&self) -> Password {
        Password::from(&self.0.read()[..])
    }
}

impl fmt::Debug for Passphrase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// Our account's secret key (a transferable secret key), checked at load: readable, unlocked
/// by the passphrase, neither expired nor revoked, and able to decrypt.
pub struct OurKey {
    key: SignedSecretKey,
    passphrase: Passphrase,
    path: PathBuf,
}

/// Only public facts: the secret material (even encrypted) and the passphrase never print.
impl fmt::Debug for OurKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OurKey")
            .field("path", &self.path)
            .field("fingerprint", &self.fingerprint())
            .field("passphrase", &self.passphrase)
            .finish()
    }
}

impl OurKey {
    /// Loads and checks the key as of now.
    pub fn load(path: &Path, passphrase: Option<&str>) -> Result<OurKey, KeyError> {
        Self::load_at(path, passphrase, SystemTime::now())
    }

    /// Loads and checks the key as of `now` (expiry and revocation are judged at that time).
    pub fn load_at(path: &Path, passphrase: Option<&str>, now: SystemTime) -> Result<OurKey, KeyError> {
        let bytes = read_key_file(path)?;
        let key = parse_secret_key(path, &bytes)?;
        let ours = OurKey {
            key,
            passphrase: Passphrase(passphrase.map(Password::from).unwrap_or_else(Password::empty)),
            path: path.to_path_buf(),
        };
        let standing = ours.standing(secs(now));
        standing.check_primary(path, secs(now))?;
        let usable: Vec<&Standing> = standing.usable(Use::Encrypt, secs(now)).collect();
        if usable.is_empty() {
            return Err(KeyError::CannotDecrypt {
                path: path.to_path_buf(),
                key_id: long_id(&standing.primary.key_id),
                reason: standing.why_not(Use::Encrypt, secs(now)),
            });
        }
        // Verify the passphrase now, not at the first file: unlock what we will use.
        for s in usable.into_iter().chain(standing.usable(Use::Sign, secs(now))) {
            ours.check_unlocks(s)?;
        }
        Ok(ours)
    }

    /// Whether the key can sign outbound files now (config load calls this when signing is on).
    pub fn check_can_sign(&self) -> Result<(), KeyError> {
        self.check_can_sign_at(SystemTime::now())
    }

    /// [`OurKey::check_can_sign`] as of `now`.
    pub fn check_can_sign_at(&self, now: SystemTime) -> Result<(), KeyError> {
        let standing = self.standing(secs(now));
        standing.check_primary(&self.path, secs(now))?;
        if standing.usable(Use::Sign, secs(now)).next().is_none() {
            return Err(KeyError::CannotSign {
                path: self.path.clone(),
                key_id: long_id(&standing.primary.key_id),
                reason: standing.why_not(Use::Sign, secs(now)),
            });
        }
        Ok(())
    }

    /// The primary key's fingerprint, upper-case hex as gpg prints it.
    pub fn fingerprint(&self) -> String {
        format!("{:X}", self.key.primary_key.fingerprint())
    }

    /// The key's standing; components whose secret part is not in the file (a stub, see
    /// [`is_stub`], or a public subkey packet in the secret key file) can do nothing here,
    /// whatever their flags say.
    fn standing(&self, now: u32) -> KeyStanding {
        let secret = self.key.secret_subkeys.iter().map(|s| (s.key.public_key(), &s.signatures[..]));
        let public = self.key.public_subkeys.iter().map(|s| (&s.key, &s.signatures[..]));
        let subkeys = secret.chain(public);
        let mut standing = KeyStanding::assess(self.key.primary_key.public_key(), &self.key.details, subkeys, now);
        for s in std::iter::once(&mut standing.primary).chain(standing.subkeys.iter_mut()) {
            s.stub = self.secret_params(&s.fingerprint).is_none_or(is_stub);
        }
        standing
    }

    fn secret_params(&self, fp: &Fingerprint) -> Option<&SecretParams> {
        if &self.key.primary_key.fingerprint() == fp {
            return Some(self.key.primary_key.secret_params());
        }
        self.key.secret_subkeys.iter().find(|s| &s.key.fingerprint() == fp).map(|s| s.key.secret_params())
    }

    fn check_unlocks(&self, s: &Standing) -> Result<(), KeyError> {
        let fp = &s.fingerprint;
        let unlocked = if &self.key.primary_key.fingerprint() == fp {
            self.key.primary_key.unlock(&self.passphrase.0, |_, _| Ok(())).is_ok()
        } else {
            match self.key.secret_subkeys.iter().find(|k| &k.key.fingerprint() == fp) {
                Some(k) => k.key.unlock(&self.passphrase.0, |_, _| Ok(())).is_ok(),
                None => true,
            }
        };
        if unlocked {
            return Ok(());
        }
        let key_id = long_id(&s.key_id);
        let locked = self.secret_params(fp).is_some_and(SecretParams::is_encrypted);
        let empty = self.passphrase.0.read().is_empty();
        Err(if locked && empty {
            KeyError::PassphraseRequired { path: self.path.clone(), key_id }
        } else {
            KeyError::WrongPassphrase { path: self.path.clone(), key_id }
        })
    }

    /// The ids of our components that can decrypt, for messages naming what we hold.
    fn decryption_ids(&self) -> Vec<String> {
        let mut ids = Vec::new();
        if can_alg(self.key.primary_key.algorithm(), Use::Encrypt) {
            ids.push(long_id(&self.key.primary_key.legacy_key_id()));
        }
        for s in &self.key.secret_subkeys {
            if can_alg(s.key.algorithm(), Use::Encrypt) {
                ids.push(long_id(&s.key.legacy_key_id()));
            }
        }
        ids
    }
}

/// The partner's public key(s): one certificate or a keyring of several. Files from the partner
/// may be signed by any of them; outbound files are encrypted to each of them.
pub struct PartnerKey {
    certs: Vec<SignedPublicKey>,
    path: PathBuf,
}

impl fmt::Debug for PartnerKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PartnerKey").field("path", &self.path).field("fingerprints", &self.fingerprints()).finish()
    }
}

impl PartnerKey {
    /// Loads the key file and checks, as of now, that no certificate in it is expired or revoked.
    pub fn load(path: &Path) -> Result<PartnerKey, KeyError> {
        Self::load_at(path, SystemTime::now())
    }

    /// [`PartnerKey::load`] as of `now`. Whether the keys can encrypt is not checked here (a
    /// partner key used only to verify signatures need not): see [`PartnerKey::check_can_encrypt`].
    pub fn load_at(path: &Path, now: SystemTime) -> Result<PartnerKey, KeyError> {
        let bytes = read_key_file(path)?;
        let certs = parse_public_keys(path, &bytes)?;
        let partner = PartnerKey { certs, path: path.to_path_buf() };
        for standing in partner.standings(secs(now)) {
            standing.check_primary(path, secs(now))?;
        }
        Ok(partner)
    }

    /// Whether every certificate has a valid component that may encrypt, now. Config load calls
    /// this when outbound encryption is on; [`encrypt`] checks again at each file.
    pub fn check_can_encrypt(&self) -> Result<(), KeyError> {
        self.check_can_encrypt_at(SystemTime::now())
    }

    /// [`PartnerKey::check_can_encrypt`] as of `now`.
    pub fn check_can_encrypt_at(&self, now: SystemTime) -> Result<(), KeyError> {
        for standing in self.standings(secs(now)) {
            standing.check_primary(&self.path, secs(now))?;
            if standing.usable(Use::Encrypt, secs(now)).next().is_none() {
                return Err(KeyError::CannotEncrypt {
                    path: self.path.clone(),
                    key_id: long_id(&standing.primary.key_id),
                    reason: standing.why_not(Use::Encrypt, secs(now)),
                });
            }
        }
        Ok(())
    }

    /// The primary fingerprints, upper-case hex as gpg prints them.
    pub fn fingerprints(&self) -> Vec<String> {
        self.certs.iter().map(|c| format!("{:X}", c.primary_key.fingerprint())).collect()
    }

    fn standings(&self, now: u32) -> impl Iterator<Item = KeyStanding> + '_ {
        self.certs.iter().map(move |c| {
            let subkeys = c.public_subkeys.iter().map(|s| (&s.key, &s.signatures[..]));
            KeyStanding::assess(&c.primary_key, &c.details, subkeys, now)
        })
    }

    /// The component (primary or subkey, of any certificate) a signature names as its issuer.
    fn issuer_of(&self, sig: &Signature) -> Option<(Component<'_>, &SignedPublicKey)> {
        let ids = sig.issuer_key_id();
        let fps = sig.issuer_fingerprint();
        let named = |id: KeyId, fp: Fingerprint| ids.contains(&&id) || fps.contains(&&fp);
        for cert in &self.certs {
            if named(cert.primary_key.legacy_key_id(), cert.primary_key.fingerprint()) {
                return Some((Component::Primary(&cert.primary_key), cert));
            }
            for sub in &cert.public_subkeys {
                if named(sub.key.legacy_key_id(), sub.key.fingerprint()) {
                    return Some((Component::Subkey(&sub.key), cert));
                }
            }
        }
        None
    }
}

/// A public component that can check a signature or take a session key.
#[derive(Clone, Copy)]
enum Component<'k> {
    Primary(&'k PublicKey),
    Subkey(&'k PublicSubkey),
}

impl Component<'_> {
    fn verifier(&self) -> &dyn VerifyingKey {
        match self {
            Component::Primary(k) => *k,
            Component::Subkey(k) => *k,
        }
    }

    fn fingerprint(&self) -> Fingerprint {
        match self {
            Component::Primary(k) => k.fingerprint(),
            Component::Subkey(k) => k.fingerprint(),
        }
    }

    fn key_id(&self) -> KeyId {
        match self {
            Component::Primary(k) => k.legacy_key_id(),
            Component::Subkey(k) => k.legacy_key_id(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Use {
    Encrypt,
    Sign,
}

/// One component's standing at a moment: what its newest valid self-signature allows.
#[derive(Debug, Clone)]
struct Standing {
    key_id: KeyId,
    fingerprint: Fingerprint,
    created: u32,
    can_encrypt: bool,
    can_sign: bool,
    /// Absolute expiry (seconds since the epoch); `None` never expires.
    expires: Option<u32>,
    /// The revocation's reason, when a valid revocation signature exists.
    revoked: Option<String>,
    /// Subkeys only: bound by a valid binding signature (an unbound subkey is not the key's).
    bound: bool,
    /// Our keys only: the secret part is absent (a GnuPG stub).
    stub: bool,
}

impl Standing {
    fn expired(&self, now: u32) -> bool {
        self.expires.is_some_and(|t| t <= now)
    }

    fn may(&self, u: Use) -> bool {
        match u {
            Use::Encrypt => self.can_encrypt,
            Use::Sign => self.can_sign,
        }
    }

    fn usable(&self, u: Use, now: u32) -> bool {
        self.bound && !self.stub && self.revoked.is_none() && !self.expired(now) && self.may(u)
    }
}

/// A whole key's standing: the primary and each subkey, judged as gpg judges them (the newest
/// valid self-signature decides flags and expiry; a valid revocation revokes; signatures that do
/// not verify, including third-party certifications, are ignored).
#[derive(Debug)]
struct KeyStanding {
    primary: Standing,
    subkeys: Vec<Standing>,
    /// The primary has a valid self-signature (on a user ID or a direct-key signature).
    self_signed: bool,
}

impl KeyStanding {
    fn assess<'k>(
        primary: &'k PublicKey,
        details: &'k SignedKeyDetails,
        subkeys: impl Iterator<Item = (&'k PublicSubkey, &'k [Signature])>,
        now: u32,
    ) -> KeyStanding {
        let mut newest: Option<&Signature> = None;
        let mut consider = |sig: &'k Signature| {
            if created(sig) <= now && newest.is_none_or(|n| created(n) < created(sig)) {
                newest = Some(sig);
            }
        };
        for sig in &details.direct_signatures {
            if sig.typ() == Some(SignatureType::Key) && sig.verify_key(primary).is_ok() {
                consider(sig);
            }
        }
        for user in &details.users {
            let mut best: Option<&Signature> = None;
            let mut revoked = false;
            for sig in &user.signatures {
                if sig.verify_certification(primary, Tag::UserId, &user.id).is_err() {
                    continue;
                }
                if sig.typ() == Some(SignatureType::CertRevocation) {
                    revoked = true;
                } else if created(sig) <= now && best.is_none_or(|b| created(b) < created(sig)) {
                    best = Some(sig);
                }
            }
            if let (false, Some(b)) = (revoked, best) {
                consider(b);
            }
        }
        let revoked = details
            .revocation_signatures
            .iter()
            .find(|s| s.typ() == Some(SignatureType::KeyRevocation) && s.verify_key(primary).is_ok())
            .map(revocation_reason);
        let (can_encrypt, can_sign) = capabilities(newest, primary.algorithm());
        let primary_standing = Standing {
            key_id: primary.legacy_key_id(),
            fingerprint: primary.fingerprint(),
            created: primary.created_at().as_secs(),
            can_encrypt,
            can_sign,
            expires: newest.and_then(|s| expiry(primary.created_at().as_secs(), s)),
            revoked,
            bound: newest.is_some(),
            stub: false,
        };
        let subkeys = subkeys.map(|(sub, sigs)| Self::assess_subkey(primary, sub, sigs, now)).collect();
        KeyStanding { self_signed: newest.is_some(), primary: primary_standing, subkeys }
    }

    fn assess_subkey(primary: &PublicKey, sub: &PublicSubkey, sigs: &[Signature], now: u32) -> Standing {
        let mut binding: Option<&Signature> = None;
        let mut revoked = None;
        for sig in sigs {
            if sig.verify_subkey_binding(primary, sub).is_err() {
                continue;
            }
            match sig.typ() {
                Some(SignatureType::SubkeyRevocation) => revoked = Some(revocation_reason(sig)),
                Some(SignatureType::SubkeyBinding)
                    if created(sig) <= now && binding.is_none_or(|b| created(b) < created(sig)) =>
                {
                    binding = Some(sig)
                }
                _ => {}
            }
        }
        let (can_encrypt, mut can_sign) = capabilities(binding, sub.algorithm());
        // A signing subkey must sign the primary back, or anyone could claim it as theirs.
        if can_sign {
            can_sign = binding
                .and_then(Signature::embedded_signature)
                .is_some_and(|back| back.verify_primary_key_binding(sub, primary).is_ok());
        }
        Standing {
            key_id: sub.legacy_key_id(),
            fingerprint: sub.fingerprint(),
            created: sub.created_at().as_secs(),
            can_encrypt,
            can_sign,
            expires: binding.and_then(|s| expiry(sub.created_at().as_secs(), s)),
            revoked,
            bound: binding.is_some(),
            stub: false,
        }
    }

    /// Errors for the key as a whole at `now`: revoked, not self-signed, or expired.
    fn check_primary(&self, path: &Path, now: u32) -> Result<(), KeyError> {
        let key_id = long_id(&self.primary.key_id);
        let path = path.to_path_buf();
        if let Some(reason) = &self.primary.revoked {
            return Err(KeyError::Revoked { path, key_id, reason: reason.clone() });
        }
        if !self.self_signed {
            let reason = "no valid self-signature binds it (its user IDs are not signed by the key itself)".into();
            return Err(KeyError::Invalid { path, key_id, reason });
        }
        if let Some(t) = self.primary.expires.filter(|_| self.primary.expired(now)) {
            return Err(KeyError::Expired { path, key_id, expired: date(t) });
        }
        Ok(())
    }

    /// The newest (by creation) component usable for `u` at `now`, as gpg picks it.
    fn newest(&self, u: Use, now: u32) -> Option<&Standing> {
        self.usable(u, now).fold(None, |best: Option<&Standing>, s| match best {
            Some(b) if b.created > s.created => Some(b),
            _ => Some(s),
        })
    }

    /// The components usable for `u` at `now` (the primary first, then subkeys).
    fn usable(&self, u: Use, now: u32) -> impl Iterator<Item = &Standing> {
        let primary_ok = self.primary.revoked.is_none() && !self.primary.expired(now) && self.self_signed;
        let primary = (primary_ok && !self.primary.stub && self.primary.may(u)).then_some(&self.primary);
        primary.into_iter().chain(self.subkeys.iter().filter(move |s| primary_ok && s.usable(u, now)))
    }

    /// Why no component is usable for `u`, for the error message.
    fn why_not(&self, u: Use, now: u32) -> String {
        let what = match u {
            Use::Encrypt => "encryption",
            Use::Sign => "signing",
        };
        let mut reasons: Vec<String> = Vec::new();
        if self.primary.stub && self.primary.may(u) {
            reasons.push(format!(
                "its primary key {} has no secret part in the file (exported with --export-secret-subkeys, or on \
                 a smartcard)",
                long_id(&self.primary.key_id)
            ));
        }
        for s in self.subkeys.iter().filter(|s| s.bound && s.may(u)) {
            let id = long_id(&s.key_id);
            if s.stub {
                reasons.push(format!("its {what} subkey {id} has no secret part in the file"));
            } else if let Some(r) = &s.revoked {
                reasons.push(format!("its {what} subkey {id} is revoked ({r})"));
            } else if let Some(t) = s.expires.filter(|_| s.expired(now)) {
                reasons.push(format!("its {what} subkey {id} expired on {}", date(t)));
            }
        }
        if reasons.is_empty() {
            format!("it has no {what} subkey, and its primary key is not marked for {what}")
        } else {
            reasons.join("; ")
        }
    }
}

/// A GnuPG stub: a secret key packet without the secret (S2K type 101, "gnu-dummy" for a key
/// exported with `--export-secret-subkeys`, or "divert-to-card").
fn is_stub(p: &SecretParams) -> bool {
    let SecretParams::Encrypted(e) = p else {
        return false;
    };
    match e.string_to_key_params() {
        S2kParams::Cfb { s2k, .. } | S2kParams::MalleableCfb { s2k, .. } | S2kParams::Aead { s2k, .. } => {
            matches!(s2k, StringToKey::Private { typ: 101, .. })
        }
        _ => false,
    }
}

fn created(sig: &Signature) -> u32 {
    sig.created().map(|t| t.as_secs()).unwrap_or(0)
}

/// The key's expiry from a self-signature's Key Expiration Time (relative to key creation; 0 is
/// "never").
fn expiry(key_created: u32, sig: &Signature) -> Option<u32> {
    sig.key_expiration_time().map(|d| d.as_secs()).filter(|&d| d > 0).map(|d| key_created.saturating_add(d))
}

/// Flags from the self-signature when it has a Key Flags subpacket; old keys without one may do
/// what their algorithm can.
fn capabilities(sig: Option<&Signature>, alg: PublicKeyAlgorithm) -> (bool, bool) {
    let has_flags = sig
        .and_then(|s| s.config())
        .is_some_and(|c| c.hashed_subpackets().any(|p| matches!(p.data, SubpacketData::KeyFlags(_))));
    match sig {
        Some(s) if has_flags => {
            let f = s.key_flags();
            (
                (f.encrypt_comms() || f.encrypt_storage()) && can_alg(alg, Use::Encrypt),
                f.sign() && can_alg(alg, Use::Sign),
            )
        }
        _ => (can_alg(alg, Use::Encrypt), can_alg(alg, Use::Sign)),
    }
}

fn can_alg(alg: PublicKeyAlgorithm, u: Use) -> bool {
    match u {
        Use::Encrypt => alg.can_encrypt(),
        Use::Sign => alg.can_sign(),
    }
}

fn revocation_reason(sig: &Signature) -> String {
    let code = match sig.revocation_reason_code() {
        None | Some(RevocationCode::NoReason) => "no reason given",
        Some(RevocationCode::KeySuperseded) => "superseded",
        Some(RevocationCode::KeyCompromised) => "compromised",
        Some(RevocationCode::KeyRetired) => "retired",
        Some(_) => "other reason",
    };
    let text = sig.revocation_reason_string().map(|b| String::from_utf8_lossy(b).trim().to_string());
    match text.filter(|t| !t.is_empty()) {
        Some(t) => format!("{code}: {}", clip(&t)),
        None => code.to_string(),
    }
}

/// A long key id as gpg prints it with `--keyid-format 0xlong`.
fn long_id(id: &KeyId) -> String {
    format!("0x{}", hex::encode_upper(id))
}

fn secs(t: SystemTime) -> u32 {
    t.duration_since(UNIX_EPOCH).map(|d| d.as_secs().min(u64::from(u32::MAX)) as u32).unwrap_or(0)
}

fn date(t: u32) -> String {
    chrono::DateTime::from_timestamp(i64::from(t), 0)
        .map(|d| d.format("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_else(|| t.to_string())
}

fn clip(s: &str) -> String {
    if s.chars().count() <= MAX_DETAIL_CHARS {
        return s.to_string();
    }
    let mut out: String = s.chars().take(MAX_DETAIL_CHARS).collect();
    out.push('…');
    out
}

fn read_key_file(path: &Path) -> Result<Vec<u8>, KeyError> {
    let unreadable = |source| KeyError::Unreadable { path: path.to_path_buf(), source };
    let file = std::fs::File::open(path).map_err(unreadable)?;
    let mut bytes = Vec::new();
    file.take(MAX_KEY_FILE_BYTES + 1).read_to_end(&mut bytes).map_err(unreadable)?;
    if bytes.len() as u64 > MAX_KEY_FILE_BYTES {
        let reason = format!("larger than {MAX_KEY_FILE_BYTES} bytes");
        return Err(KeyError::NotAKey { path: path.to_path_buf(), reason });
    }
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(KeyError::NotAKey { path: path.to_path_buf(), reason: "the file is empty".into() });
    }
    Ok(bytes)
}

/// What a key file holds, judged from its armour header or first packet, for a clear error when
/// a public key is given where the secret key belongs or the other way round.
#[derive(Debug, PartialEq, Eq)]
enum KeyFileKind {
    Secret,
    Public,
    Other,
}

fn key_file_kind(bytes: &[u8]) -> KeyFileKind {
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(4096)]);
    if text.contains("-----BEGIN PGP PRIVATE KEY BLOCK-----") {
        return KeyFileKind::Secret;
    }
    if text.contains("-----BEGIN PGP PUBLIC KEY BLOCK-----") {
        return KeyFileKind::Public;
    }
    match bytes.first().and_then(|&b| packet_tag(b)) {
        Some(5) => KeyFileKind::Secret,
        Some(6) => KeyFileKind::Public,
        _ => KeyFileKind::Other,
    }
}

/// The packet tag of an OpenPGP packet header's first byte, `None` when it is no packet header.
fn packet_tag(b: u8) -> Option<u8> {
    if b & 0x80 == 0 {
        return None;
    }
    Some(if b & 0x40 != 0 { b & 0x3f } else { (b >> 2) & 0x0f })
}

/// The armour blocks of a file (gpg writes one block per export; people concatenate them).
fn armour_blocks(bytes: &[u8]) -> Vec<&[u8]> {
    const BEGIN: &[u8] = b"-----BEGIN PGP ";
    let starts: Vec<usize> = memchr::memmem::find_iter(bytes, BEGIN).collect();
    starts.iter().enumerate().map(|(i, &s)| &bytes[s..starts.get(i + 1).copied().unwrap_or(bytes.len())]).collect()
}

fn is_binary(bytes: &[u8]) -> bool {
    bytes.first().is_some_and(|b| b & 0x80 != 0)
}

fn parse_all<K: Deserializable>(path: &Path, bytes: &[u8]) -> Result<Vec<K>, KeyError> {
    let bad = |e: ::pgp::errors::Error| KeyError::NotAKey { path: path.to_path_buf(), reason: clip(&e.to_string()) };
    let mut out = Vec::new();
    if is_binary(bytes) {
        for k in K::from_bytes_many(bytes).map_err(bad)? {
            out.push(k.map_err(bad)?);
        }
    } else {
        let blocks = armour_blocks(bytes);
        if blocks.is_empty() {
            let reason = "neither binary OpenPGP nor an ASCII-armoured key block".into();
            return Err(KeyError::NotAKey { path: path.to_path_buf(), reason });
        }
        for block in blocks {
            let (keys, _headers) = K::from_armor_many_buf(block).map_err(bad)?;
            for k in keys {
                out.push(k.map_err(bad)?);
            }
        }
    }
    Ok(out)
}

fn parse_secret_key(path: &Path, bytes: &[u8]) -> Result<SignedSecretKey, KeyError> {
    let not_a_key = |reason: String| KeyError::NotAKey { path: path.to_path_buf(), reason };
    if key_file_kind(bytes) == KeyFileKind::Public {
        return Err(not_a_key(
            "it holds a public key; our key must be the secret key (gpg --export-secret-keys)".into(),
        ));
    }
    let mut keys = parse_all::<SignedSecretKey>(path, bytes)?;
    match keys.len() {
        0 => Err(not_a_key("no secret key found in it".into())),
        1 => Ok(keys.remove(0)),
        n => Err(not_a_key(format!("it holds {n} secret keys; expected exactly one"))),
    }
}

fn parse_public_keys(path: &Path, bytes: &[u8]) -> Result<Vec<SignedPublicKey>, KeyError> {
    if key_file_kind(bytes) == KeyFileKind::Secret {
        let reason = "it holds a secret key; the partner's key file must hold only public keys (gpg --export)".into();
        return Err(KeyError::NotAKey { path: path.to_path_buf(), reason });
    }
    let certs = parse_all::<SignedPublicKey>(path, bytes)?;
    if certs.is_empty() {
        return Err(KeyError::NotAKey { path: path.to_path_buf(), reason: "no public key found in it".into() });
    }
    Ok(certs)
}

/// Where the drop's own read error waits while rPGP sees only a stand-in: rPGP turns the errors
/// of its source into its own, and a lost connection must stay the drop's (`WrapError::Drop`),
/// not become a verdict on the file.
#[derive(Clone, Default)]
struct Slot(Arc<Mutex<Option<io::Error>>>);

impl Slot {
    fn put(&self, e: io::Error) {
        let mut g = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if g.is_none() {
            *g = Some(e);
        }
    }

    fn take(&self) -> Option<io::Error> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).take()
    }
}

/// The stand-in rPGP sees in place of the drop's error.
#[derive(Debug, thiserror::Error)]
#[error("the underlying stream failed")]
struct UnderlyingFailed;

/// The drop's stream under rPGP, its errors kept in the [`Slot`].
struct DropTap<'a> {
    inner: Box<dyn Read + Send + 'a>,
    slot: Slot,
}

impl fmt::Debug for DropTap<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DropTap")
    }
}

impl Read for DropTap<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            match self.inner.read(buf) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    let kind = e.kind();
                    self.slot.put(e);
                    return Err(io::Error::new(kind, UnderlyingFailed));
                }
                ok => return ok,
            }
        }
    }
}

/// The writer under rPGP's encryption, its errors kept the same way.
struct WriteTap<'w> {
    inner: &'w mut dyn Write,
    slot: Slot,
}

impl Write for WriteTap<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        // A writer that takes nothing (full) fails the way `write_all` would report it, but as
        // the output's failure rather than rPGP's.
        let r = match self.inner.write(buf) {
            Ok(0) if !buf.is_empty() => Err(io::Error::new(io::ErrorKind::WriteZero, "the output takes no more bytes")),
            r => r,
        };
        r.map_err(|e| {
            let kind = e.kind();
            self.slot.put(e);
            io::Error::new(kind, UnderlyingFailed)
        })
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush().map_err(|e| {
            let kind = e.kind();
            self.slot.put(e);
            io::Error::new(kind, UnderlyingFailed)
        })
    }
}

/// The plaintext source of [`encrypt`], its errors kept the same way.
struct ReadTap<'r> {
    inner: &'r mut dyn Read,
    slot: Slot,
}

impl Read for ReadTap<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            match self.inner.read(buf) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    let kind = e.kind();
                    self.slot.put(e);
                    return Err(io::Error::new(kind, UnderlyingFailed));
                }
                ok => return ok,
            }
        }
    }
}

/// How many bytes we look at before handing the stream to rPGP, to tell "not OpenPGP at all"
/// from a damaged message.
const SNIFF_BYTES: usize = 512;

/// The packet tags an OpenPGP message may start with (RFC 9580 §10.3).
fn is_message_tag(tag: u8) -> bool {
    // PKESK, Signature, SKESK, OPS, Compressed, SED, Marker, Literal, SEIPD, OCB (GnuPG), Padding
    matches!(tag, 1 | 2 | 3 | 4 | 8 | 9 | 10 | 11 | 18 | 20 | 21)
}

fn sniff(head: &[u8]) -> Result<(), WrapError> {
    if head.is_empty() {
        return Err(WrapError::PgpCorrupt("the file is empty, not an OpenPGP message".into()));
    }
    if let Some(tag) = packet_tag(head[0]) {
        if is_message_tag(tag) {
            return Ok(());
        }
        return Err(WrapError::PgpCorrupt(format!(
            "not an OpenPGP message: it starts with a byte 0x{:02X} that is no OpenPGP message packet{}",
            head[0],
            match tag {
                5 | 6 => " (it is a key, not a message)",
                _ => "",
            }
        )));
    }
    let start = head.iter().position(|b| !b.is_ascii_whitespace()).unwrap_or(head.len());
    let rest = &head[start..];
    const ARMOUR: &[u8] = b"-----BEGIN PGP MESSAGE";
    if rest.len() >= ARMOUR.len() && rest.starts_with(ARMOUR) {
        return Ok(());
    }
    if rest.starts_with(b"-----BEGIN PGP SIGNED MESSAGE") {
        return Err(WrapError::PgpCorrupt(
            "a clear-signed OpenPGP text, not an encrypted message; inbound files must be encrypted to our key".into(),
        ));
    }
    if ARMOUR.starts_with(rest) {
        return Err(WrapError::PgpCorrupt("truncated: the file ends inside the ASCII armour header".into()));
    }
    if let Some(kind) = rest.strip_prefix(b"-----BEGIN PGP ") {
        let kind = String::from_utf8_lossy(&kind[..kind.iter().position(|&b| b == b'-').unwrap_or(kind.len())]);
        return Err(WrapError::PgpCorrupt(format!(
            "not an OpenPGP message: ASCII armour of a PGP {}, not of a PGP MESSAGE",
            clip(kind.trim())
        )));
    }
    Err(WrapError::PgpCorrupt(
        "not an OpenPGP message: neither binary OpenPGP packets nor ASCII armour (-----BEGIN PGP MESSAGE-----); \
         is it a plain file with a .pgp name?"
            .into(),
    ))
}

/// Decrypts an inbound OpenPGP message, as a stream.
///
/// The message must be encrypted (SEIPD v1 with MDC, SEIPD v2, or GnuPG's OCB packet; all carry
/// integrity protection) to one of `ours`'s components. Compressed packets inside are unpacked.
/// Refused: encrypted to other keys (`PgpWrongKey`, naming their ids), corrupt or truncated
/// data, failed integrity checks, legacy packets without integrity protection and unencrypted
/// messages (`PgpCorrupt`), signatures that fail (`PgpBadSignature`).
///
/// Signatures: a signature whose issuer is one of `partner`'s keys must verify, always. With
/// `require_signature`, at least one such good signature is needed. A signature by a key that is
/// not the partner's is not checked and does not count (we cannot tell a forgery from a key we
/// were not given); when no signature is required it is accepted and logged, since the file would
/// be accepted unsigned as well.
///
/// Errors found while reading (MDC, AEAD, signatures) come out of `read()` before `Ok(0)`, as
/// `io::Error`s from [`WrapError::into_io`]; every later read repeats the error. The input must
/// be `Send` because rPGP's readers are.
pub fn decrypt<'a>(
    input: Box<dyn Read + Send + 'a>,
    ours: &'a OurKey,
    partner: Option<&'a PartnerKey>,
    require_signature: bool,
) -> Result<Box<dyn Read + Send + 'a>, WrapError> {
    let slot = Slot::default();
    let mut tap = DropTap { inner: input, slot: slot.clone() };
    let mut head = Vec::with_capacity(SNIFF_BYTES);
    (&mut tap).take(SNIFF_BYTES as u64).read_to_end(&mut head).map_err(|e| stream_error(&slot, e))?;
    sniff(&head)?;
    let source = BufReader::with_capacity(64 * 1024, Cursor::new(head).chain(tap));
    let (msg, _headers) = Message::from_reader(source).map_err(|e| parse_error(&slot, e))?;
    let msg = decrypt_message(msg, ours, &slot)?;
    let msg = unpack(msg, &slot)?;
    Ok(Box::new(Decryptor { msg, partner, require_signature, slot, state: State::Reading }))
}

fn decrypt_message<'a>(msg: Message<'a>, ours: &OurKey, slot: &Slot) -> Result<Message<'a>, WrapError> {
    let Message::Encrypted { esk, edata, .. } = &msg else {
        return Err(WrapError::PgpCorrupt(format!(
            "the OpenPGP message is not encrypted (it is {}); inbound files must be encrypted to our key",
            describe(&msg)
        )));
    };
    if matches!(edata, Edata::SymEncryptedData { .. }) {
        return Err(WrapError::PgpCorrupt(
            "the message has no integrity protection (a legacy Symmetrically Encrypted Data packet without MDC, \
             as written by gpg --rfc2440 or very old PGP); it could have been altered undetectably, so it is refused"
                .into(),
        ));
    }
    let pkesks: Vec<_> = esk
        .iter()
        .filter_map(|e| match e {
            Esk::PublicKeyEncryptedSessionKey(p) => Some(p),
            Esk::SymKeyEncryptedSessionKey(_) => None,
        })
        .collect();
    let recipients: Vec<String> = pkesks
        .iter()
        .map(|p| match (p.id(), p.fingerprint()) {
            (Ok(id), _) => long_id(id),
            (_, Ok(Some(fp))) => format!("0x{fp:X}"),
            _ => "an anonymous recipient".to_string(),
        })
        .collect();
    let ours_ids = ours.decryption_ids().join(", ");
    if pkesks.is_empty() {
        return Err(WrapError::PgpWrongKey {
            key_ids: Vec::new(),
            message: format!(
                "the message is encrypted with a passphrase, not to a public key; we decrypt only messages \
                 encrypted to our key ({ours_ids})"
            ),
        });
    }
    // Which of our components the recipients name: a wildcard (hidden) recipient matches every
    // key; a component without its secret part (a GnuPG stub) cannot take the session key.
    let named = |p: &&&PublicKeyEncryptedSessionKey| !p.id().is_ok_and(|id| id.is_wildcard());
    let takes = |p: &PublicKeyEncryptedSessionKey, with_secret: bool| {
        (p.match_identity(ours.key.primary_key.public_key())
            && !(with_secret && is_stub(ours.key.primary_key.secret_params())))
            || ours
                .key
                .secret_subkeys
                .iter()
                .any(|s| p.match_identity(s.key.public_key()) && !(with_secret && is_stub(s.key.secret_params())))
    };
    let any_match = pkesks.iter().any(|p| takes(p, false));
    let named_with_secret = pkesks.iter().filter(named).any(|p| takes(p, true));
    let named_stub_only = !named_with_secret && pkesks.iter().filter(named).any(|p| takes(p, false));
    let hidden_recipients = !pkesks.iter().any(|p| named(&p));
    let wrong_key = || WrapError::PgpWrongKey {
        key_ids: recipients.clone(),
        message: if named_stub_only {
            format!(
                "the message is encrypted to {}, our key, but its secret part is not in our key file (a stub, as \
                 gpg --export-secret-subkeys or a smartcard leaves)",
                recipients.join(", ")
            )
        } else if hidden_recipients {
            format!(
                "the message is encrypted to a hidden recipient (key id {}, as gpg --throw-keyids writes) and none \
                 of our keys ({ours_ids}) decrypts it",
                recipients.join(", ")
            )
        } else {
            format!("the message is encrypted to {}, which is not our key (ours: {ours_ids})", recipients.join(", "))
        },
    };
    if !any_match || (named_stub_only && hidden_recipients) {
        return Err(wrong_key());
    }
    let ring = TheRing {
        secret_keys: vec![&ours.key],
        key_passwords: vec![&ours.passphrase.0],
        // GnuPG's OCB packet is authenticated like SEIPDv2; gpg 2.3+ writes it to keys that
        // advertise AEAD. Streaming SEIPDv1: see the module doc.
        decrypt_options: DecryptionOptions::new().enable_gnupg_aead().set_seipdv1_read_mode(Seipdv1ReadMode::Streaming),
        ..Default::default()
    };
    match msg.decrypt_the_ring(ring, true) {
        Ok((msg, _)) => Ok(msg),
        Err(e) => {
            if let Some(d) = slot.take() {
                return Err(WrapError::Drop(d));
            }
            // Only hidden recipients (or stubs) matched, and none of ours took the session key.
            if matches!(e, ::pgp::errors::Error::MissingKey) && !named_with_secret {
                return Err(wrong_key());
            }
            Err(WrapError::PgpCorrupt(clip(&format!(
                "the message is addressed to our key but cannot be decrypted: {e}"
            ))))
        }
    }
}

fn describe(msg: &Message<'_>) -> &'static str {
    match msg {
        Message::Literal { .. } => "plain literal data",
        Message::Compressed { .. } => "compressed data",
        Message::Signed { .. } => "a signed message",
        Message::Encrypted { .. } => "an encrypted message",
    }
}

/// The message under any signature layers: where the data (or a compressed or encrypted layer)
/// sits.
fn innermost<'m, 'a>(msg: &'m Message<'a>) -> &'m Message<'a> {
    let mut m = msg;
    while let Message::Signed { reader, .. } = m {
        m = reader.get_ref();
    }
    m
}

/// Decompresses until the literal data is reached (rPGP's `decompress` unpacks the innermost
/// compressed layer, under any signatures).
fn unpack<'a>(mut msg: Message<'a>, slot: &Slot) -> Result<Message<'a>, WrapError> {
    for _ in 0..MAX_NESTING {
        match innermost(&msg) {
            Message::Literal { .. } => return Ok(msg),
            Message::Compressed { .. } => msg = msg.decompress().map_err(|e| parse_error(slot, e))?,
            Message::Encrypted { .. } => {
                return Err(WrapError::PgpCorrupt("an encrypted message inside the encrypted message".into()))
            }
            Message::Signed { .. } => unreachable!("innermost walks through signed layers"),
        }
    }
    Err(WrapError::PgpCorrupt(format!("compressed more than {MAX_NESTING} levels deep")))
}

fn parse_error(slot: &Slot, e: ::pgp::errors::Error) -> WrapError {
    if let Some(d) = slot.take() {
        return WrapError::Drop(d);
    }
    WrapError::PgpCorrupt(clip(&format!("the OpenPGP message is corrupt or truncated: {e}")))
}

/// An error out of rPGP's reader: the drop's if the drop failed, else a verdict on the file.
fn stream_error(slot: &Slot, e: io::Error) -> WrapError {
    if let Some(d) = slot.take() {
        return WrapError::Drop(d);
    }
    let inner = e.get_ref().and_then(|i| i.downcast_ref::<::pgp::errors::Error>());
    let text = match inner {
        Some(::pgp::errors::Error::MdcError) => {
            "the message failed its integrity check (MDC mismatch): it was altered or damaged".to_string()
        }
        Some(::pgp::errors::Error::Aead { .. }) => {
            format!("the message failed its integrity check (AEAD authentication): {e}")
        }
        _ if e.kind() == io::ErrorKind::UnexpectedEof => format!("the OpenPGP message is truncated: {e}"),
        _ => format!("the OpenPGP message is corrupt or truncated: {e}"),
    };
    WrapError::PgpCorrupt(clip(&text))
}

enum State {
    Reading,
    Done,
    /// Every read after a failure fails the same way.
    Failed(Verdict),
}

/// A failure that can be given out again (an `io::Error` cannot be cloned).
#[derive(Clone)]
enum Verdict {
    WrongKey(Vec<String>, String),
    Corrupt(String),
    BadSignature(String),
    TooLarge(u64),
    BadArchive(String),
    Drop(io::ErrorKind, String),
}

impl Verdict {
    fn of(e: &WrapError) -> Verdict {
        match e {
            WrapError::PgpWrongKey { key_ids, message } => Verdict::WrongKey(key_ids.clone(), message.clone()),
            WrapError::PgpCorrupt(m) => Verdict::Corrupt(m.clone()),
            WrapError::PgpBadSignature(m) => Verdict::BadSignature(m.clone()),
            WrapError::TooLarge { limit } => Verdict::TooLarge(*limit),
            WrapError::BadArchive(m) => Verdict::BadArchive(m.clone()),
            // A lower layer's verdict carried through the drop's stream stays that verdict.
            WrapError::Drop(e) => match e.get_ref().and_then(|i| i.downcast_ref::<WrapError>()) {
                Some(lower) => Verdict::of(lower),
                None => Verdict::Drop(e.kind(), e.to_string()),
            },
        }
    }

    fn error(&self) -> WrapError {
        match self.clone() {
            Verdict::WrongKey(key_ids, message) => WrapError::PgpWrongKey { key_ids, message },
            Verdict::Corrupt(m) => WrapError::PgpCorrupt(m),
            Verdict::BadSignature(m) => WrapError::PgpBadSignature(m),
            Verdict::TooLarge(limit) => WrapError::TooLarge { limit },
            Verdict::BadArchive(m) => WrapError::BadArchive(m),
            Verdict::Drop(kind, m) => WrapError::Drop(io::Error::new(kind, m)),
        }
    }
}

/// The decrypted stream: the plaintext, then the verdicts of the end of the message.
struct Decryptor<'a> {
    msg: Message<'a>,
    partner: Option<&'a PartnerKey>,
    require_signature: bool,
    slot: Slot,
    state: State,
}

impl Read for Decryptor<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match &self.state {
            State::Done => return Ok(0),
            State::Failed(v) => return Err(v.error().into_io()),
            State::Reading => {}
        }
        if buf.is_empty() {
            return Ok(0);
        }
        let result = match self.msg.read(buf) {
            Ok(0) => self.finish().map(|()| 0),
            Ok(n) => Ok(n),
            Err(e) => Err(stream_error(&self.slot, e)),
        };
        match result {
            Ok(0) => {
                self.state = State::Done;
                Ok(0)
            }
            Ok(n) => Ok(n),
            Err(w) => {
                self.state = State::Failed(Verdict::of(&w));
                Err(w.into_io())
            }
        }
    }
}

impl Decryptor<'_> {
    /// At the end of the data: the drop must not have failed under a seemingly clean end, and the
    /// signatures must satisfy the policy (see [`decrypt`]).
    fn finish(&mut self) -> Result<(), WrapError> {
        if let Some(d) = self.slot.take() {
            return Err(WrapError::Drop(d));
        }
        let mut good = Vec::new();
        let mut unknown = Vec::new();
        let now = secs(SystemTime::now());
        let mut level = &self.msg;
        while let Message::Signed { reader, .. } = level {
            let sigs: &[FullSignaturePacket] = reader.signatures().unwrap_or(&[]);
            for (i, full) in sigs.iter().enumerate() {
                let sig = full.signature();
                match self.partner.and_then(|p| p.issuer_of(sig)) {
                    Some((component, cert)) => {
                        check_partner_signature(level, i, sig, component, cert, now)?;
                        good.push(long_id(&component.key_id()));
                    }
                    None => unknown.push(issuer_text(sig)),
                }
            }
            level = reader.get_ref();
        }
        if !unknown.is_empty() && good.is_empty() {
            // Unknown signer with no partner signature: accepted unless a signature is required.
            if self.partner.is_some() {
                tracing::warn!(signers = %unknown.join(", "), "OpenPGP file signed by a key that is not the partner's; not checked");
            } else {
                tracing::debug!(signers = %unknown.join(", "), "OpenPGP file signed; no partner key to check it with");
            }
        }
        if self.require_signature && good.is_empty() {
            let Some(partner) = self.partner else {
                return Err(WrapError::PgpBadSignature(
                    "a signature is required but no partner key is configured to check it".into(),
                ));
            };
            let theirs = partner.fingerprints().join(", ");
            return Err(WrapError::PgpBadSignature(if unknown.is_empty() {
                format!("the message is not signed; a signature by the partner's key ({theirs}) is required")
            } else {
                format!(
                    "the message is signed by {}, not by the partner's key ({theirs}); a partner signature is required",
                    unknown.join(", ")
                )
            }));
        }
        Ok(())
    }
}

/// A signature whose issuer is the partner's: it must be a data signature, by a component valid
/// for signing now, and verify over the data.
fn check_partner_signature(
    level: &Message<'_>,
    index: usize,
    sig: &Signature,
    component: Component<'_>,
    cert: &SignedPublicKey,
    now: u32,
) -> Result<(), WrapError> {
    let id = long_id(&component.key_id());
    if !matches!(sig.typ(), Some(SignatureType::Binary | SignatureType::Text)) {
        return Err(WrapError::PgpBadSignature(format!("the signature by {id} is not a signature over data")));
    }
    let subkeys = cert.public_subkeys.iter().map(|s| (&s.key, &s.signatures[..]));
    let standing = KeyStanding::assess(&cert.primary_key, &cert.details, subkeys, now);
    let fp = component.fingerprint();
    if !standing.usable(Use::Sign, now).any(|s| s.fingerprint == fp) {
        return Err(WrapError::PgpBadSignature(format!(
            "the signature is by the partner's key {id}, which is not valid for signing (expired, revoked, or not a \
             signing key)"
        )));
    }
    level.verify_nested_explicit(index, component.verifier()).map_err(|e| {
        WrapError::PgpBadSignature(clip(&format!("the signature by the partner's key {id} does not verify: {e}")))
    })?;
    Ok(())
}

fn issuer_text(sig: &Signature) -> String {
    if let Some(fp) = sig.issuer_fingerprint().first() {
        return format!("0x{fp:X}");
    }
    match sig.issuer_key_id().first() {
        Some(id) => long_id(id),
        None => "an unnamed key".into(),
    }
}

/// Encrypts `plain` to every certificate of `to` (the newest valid encryption component of each)
/// as a binary SEIPDv1 message with MDC, AES-256, the format GnuPG 2.2 reads (it does not read
/// SEIPDv2); signed by `sign_with` (one-pass, SHA-256) when given. Streams: rPGP writes partial
/// body packets as the input arrives.
///
/// Errors are `WrapError::Drop`: a failure of `plain` or `out` is passed through unchanged; a key
/// no longer usable (it expired since config load) is a [`KeyError`] inside the `io::Error`, for
/// the operator rather than a verdict on a file.
pub fn encrypt(
    plain: &mut dyn Read,
    out: &mut dyn Write,
    to: &PartnerKey,
    sign_with: Option<&OurKey>,
) -> Result<(), WrapError> {
    let now = SystemTime::now();
    to.check_can_encrypt_at(now).map_err(|e| WrapError::Drop(io::Error::other(e)))?;
    if let Some(ours) = sign_with {
        ours.check_can_sign_at(now).map_err(|e| WrapError::Drop(io::Error::other(e)))?;
    }
    let slot = Slot::default();
    let mut rng = rand08::thread_rng();
    let source = ReadTap { inner: plain, slot: slot.clone() };
    let mut builder = MessageBuilder::from_reader("", source).seipd_v1(&mut rng, SymmetricKeyAlgorithm::AES256);
    let fail = |slot: &Slot, e: ::pgp::errors::Error| match slot.take() {
        Some(d) => WrapError::Drop(d),
        None => WrapError::Drop(io::Error::other(format!("OpenPGP encryption failed: {e}"))),
    };
    for cert in &to.certs {
        let subkeys = cert.public_subkeys.iter().map(|s| (&s.key, &s.signatures[..]));
        let standing = KeyStanding::assess(&cert.primary_key, &cert.details, subkeys, secs(now));
        // check_can_encrypt_at above made sure there is one.
        let Some(chosen) = standing.newest(Use::Encrypt, secs(now)).and_then(|s| component(cert, &s.fingerprint))
        else {
            continue;
        };
        match chosen {
            Component::Primary(k) => builder.encrypt_to_key(&mut rng, k),
            Component::Subkey(k) => builder.encrypt_to_key(&mut rng, k),
        }
        .map_err(|e| fail(&slot, e))?;
    }
    let signer: Option<(&dyn SigningKey, Password)> = match sign_with {
        Some(ours) => {
            let standing = ours.standing(secs(now));
            let key = standing.newest(Use::Sign, secs(now)).and_then(|s| signing_key(ours, &s.fingerprint));
            key.map(|k| (k, ours.passphrase.password()))
        }
        None => None,
    };
    if let Some((key, password)) = signer {
        builder.sign(key, password, HashAlgorithm::Sha256);
    }
    let mut sink = WriteTap { inner: out, slot: slot.clone() };
    builder.to_writer(&mut rng, &mut sink).map_err(|e| fail(&slot, e))?;
    sink.flush().map_err(|e| slot.take().map(WrapError::Drop).unwrap_or(WrapError::Drop(e)))?;
    Ok(())
}

/// The component of `cert` that `fp` names.
fn component<'k>(cert: &'k SignedPublicKey, fp: &Fingerprint) -> Option<Component<'k>> {
    if &cert.primary_key.fingerprint() == fp {
        return Some(Component::Primary(&cert.primary_key));
    }
    cert.public_subkeys.iter().find(|s| &s.key.fingerprint() == fp).map(|s| Component::Subkey(&s.key))
}

fn signing_key<'k>(ours: &'k OurKey, fp: &Fingerprint) -> Option<&'k dyn SigningKey> {
    if &ours.key.primary_key.fingerprint() == fp {
        return Some(&ours.key.primary_key);
    }
    ours.key.secret_subkeys.iter().find(|s| &s.key.fingerprint() == fp).map(|s| &s.key as &dyn SigningKey)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ::pgp::composed::{ArmorOptions, EncryptionCaps, KeyType, SecretKeyParamsBuilder, SubkeyParamsBuilder};
    use ::pgp::crypto::ecc_curve::ECCCurve;

    const PASS: &str = "unit test passphrase";

    /// A Curve25519 key made by rPGP (ed25519 primary that signs, cv25519 subkey that
    /// encrypts), written as armoured secret and public key files.
    struct Pair {
        _dir: tempfile::TempDir,
        secret: PathBuf,
        public: PathBuf,
    }

    fn pair(uid: &str, passphrase: Option<&str>) -> Pair {
        let mut sub = SubkeyParamsBuilder::default();
        sub.key_type(KeyType::ECDH(ECCCurve::Curve25519Legacy))
            .can_encrypt(EncryptionCaps::All)
            .passphrase(passphrase.map(String::from));
        let mut params = SecretKeyParamsBuilder::default();
        params
            .key_type(KeyType::Ed25519Legacy)
            .can_certify(true)
            .can_sign(true)
            .primary_user_id(uid.into())
            .passphrase(passphrase.map(String::from))
            .subkeys(vec![sub.build().expect("subkey params")]);
        let key = params.build().expect("key params").generate(rand08::thread_rng()).expect("generate");
        let dir = tempfile::tempdir().expect("tempdir");
        let secret = dir.path().join("ours.asc");
        let public = dir.path().join("ours.pub.asc");
        std::fs::write(&secret, key.to_armored_string(ArmorOptions::default()).expect("armour")).expect("write");
        let public_key = key.to_public_key();
        std::fs::write(&public, public_key.to_armored_string(ArmorOptions::default()).expect("armour")).expect("write");
        Pair { _dir: dir, secret, public }
    }

    fn seal(plain: &[u8], to: &PartnerKey, signer: Option<&OurKey>) -> Vec<u8> {
        let mut out = Vec::new();
        encrypt(&mut &plain[..], &mut out, to, signer).expect("encrypt");
        out
    }

    fn open_all(
        msg: Vec<u8>,
        ours: &OurKey,
        partner: Option<&PartnerKey>,
        require: bool,
    ) -> Result<Vec<u8>, WrapError> {
        let mut r = decrypt(Box::new(Cursor::new(msg)), ours, partner, require)?;
        let mut out = Vec::new();
        r.read_to_end(&mut out).map_err(WrapError::from_io)?;
        Ok(out)
    }

    /// Yields `data` up to `after` bytes, then fails with `err`.
    struct FailAfter {
        data: Cursor<Vec<u8>>,
        after: u64,
        err: Option<io::Error>,
    }

    impl Read for FailAfter {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let left = self.after.saturating_sub(self.data.position()) as usize;
            if left == 0 {
                return Err(self.err.take().unwrap_or_else(|| io::Error::other("failed again")));
            }
            let n = buf.len().min(left);
            self.data.read(&mut buf[..n])
        }
    }

    fn text(n: usize) -> Vec<u8> {
        (0..n).flat_map(|i| format!("SKU-{i},{}\n", i % 97).into_bytes()).collect()
    }

    #[test]
    fn packet_tags_are_read_from_both_header_formats() {
        assert_eq!(packet_tag(0x85), Some(1)); // old format, PKESK
        assert_eq!(packet_tag(0xc1), Some(1)); // new format, PKESK
        assert_eq!(packet_tag(0xd2), Some(18)); // new format, SEIPD
        assert_eq!(packet_tag(b'S'), None);
    }

    #[test]
    fn round_trip_signed_and_the_signature_policy() {
        let a = pair("A <a@example.invalid>", Some(PASS));
        let b = pair("B <b@example.invalid>", None);
        let ours = OurKey::load(&a.secret, Some(PASS)).expect("ours");
        let ours_public = PartnerKey::load(&a.public).expect("ours, public");
        let other = OurKey::load(&b.secret, None).expect("other");
        let plain = text(20_000);

        // Signed by ourselves, checked as the partner's.
        let msg = seal(&plain, &ours_public, Some(&ours));
        assert_eq!(open_all(msg, &ours, Some(&ours_public), true).expect("signed"), plain);
        // Unsigned: refused only when a signature is required.
        let msg = seal(&plain, &ours_public, None);
        assert!(matches!(open_all(msg.clone(), &ours, Some(&ours_public), true), Err(WrapError::PgpBadSignature(_))));
        assert_eq!(open_all(msg, &ours, Some(&ours_public), false).expect("unsigned"), plain);
        // Signed by a key that is not the partner's.
        let msg = seal(&plain, &ours_public, Some(&other));
        assert!(matches!(open_all(msg.clone(), &ours, Some(&ours_public), true), Err(WrapError::PgpBadSignature(_))));
        assert_eq!(open_all(msg, &ours, Some(&ours_public), false).expect("unknown signer"), plain);
        // Not addressed to us.
        let to_other = PartnerKey::load(&b.public).expect("other, public");
        let msg = seal(&plain, &to_other, None);
        assert!(
            matches!(open_all(msg, &ours, None, false), Err(WrapError::PgpWrongKey { key_ids, .. }) if key_ids.len() == 1)
        );
    }

    #[test]
    fn a_drop_failure_stays_the_drops() {
        let a = pair("A <a@example.invalid>", None);
        let ours = OurKey::load(&a.secret, None).expect("ours");
        let to = PartnerKey::load(&a.public).expect("public");
        let msg = seal(&text(50_000), &to, None);
        for after in [0, 100, msg.len() as u64 / 2, msg.len() as u64 - 1] {
            let input = FailAfter {
                data: Cursor::new(msg.clone()),
                after,
                err: Some(io::Error::new(io::ErrorKind::ConnectionReset, "peer went away")),
            };
            let r = decrypt(Box::new(input), &ours, None, false).and_then(|mut r| {
                let mut sink = Vec::new();
                r.read_to_end(&mut sink).map_err(WrapError::from_io)
            });
            match r {
                Err(WrapError::Drop(e)) => {
                    assert_eq!(e.kind(), io::ErrorKind::ConnectionReset, "after {after}");
                    assert_eq!(e.to_string(), "peer went away", "after {after}");
                }
                other => panic!("after {after}: expected Drop, got {other:?}"),
            }
        }
        // A verdict of a layer below (a bad gzip under the OpenPGP layer) comes out as itself.
        let input = FailAfter {
            data: Cursor::new(msg.clone()),
            after: msg.len() as u64 / 3,
            err: Some(WrapError::BadArchive("corrupt gzip".into()).into_io()),
        };
        let mut r = decrypt(Box::new(input), &ours, None, false).expect("header is fine");
        let e = WrapError::from_io(r.read_to_end(&mut Vec::new()).expect_err("fails"));
        assert!(matches!(&e, WrapError::BadArchive(m) if m == "corrupt gzip"), "{e:?}");
        // ... and keeps failing, never a clean end.
        let again = WrapError::from_io(r.read(&mut [0u8; 16]).expect_err("still failing"));
        assert!(matches!(again, WrapError::BadArchive(_)), "{again:?}");
    }

    #[test]
    fn end_of_stream_verdicts_come_before_eof() {
        let a = pair("A <a@example.invalid>", None);
        let ours = OurKey::load(&a.secret, None).expect("ours");
        let to = PartnerKey::load(&a.public).expect("public");
        let plain = text(30_000);
        let msg = seal(&plain, &to, Some(&ours));
        // A flipped byte near the end: all the data may come out, but never a clean end.
        let mut flipped = msg.clone();
        let at = flipped.len() - 200;
        flipped[at] ^= 0x40;
        let mut r = decrypt(Box::new(Cursor::new(flipped)), &ours, Some(&to), false).expect("header is fine");
        let mut got = Vec::new();
        let e = WrapError::from_io(r.read_to_end(&mut got).expect_err("integrity failure"));
        assert!(matches!(e, WrapError::PgpCorrupt(_) | WrapError::PgpBadSignature(_)), "{e:?}");
        assert!(r.read(&mut [0u8; 8]).is_err(), "the error repeats");
        // Truncated by one byte (inside the MDC).
        let r = open_all(msg[..msg.len() - 1].to_vec(), &ours, Some(&to), false);
        assert!(matches!(r, Err(WrapError::PgpCorrupt(_))), "{:?}", r.map(|v| v.len()));
        assert_eq!(open_all(msg, &ours, Some(&to), true).expect("intact"), plain);
    }

    #[test]
    fn what_is_not_an_openpgp_message() {
        let a = pair("A <a@example.invalid>", None);
        let ours = OurKey::load(&a.secret, None).expect("ours");
        let cases: [(&[u8], &str); 6] = [
            (b"sku,qty\nA-1,4\n", "not an OpenPGP message"),
            (b"", "empty"),
            (b"\xef\xbb\xbfsku,qty\n", "not an OpenPGP message"),
            (b"-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA256\n\nhi\n", "clear-signed"),
            (b"  -----BEGIN PGP MESS", "truncated"),
            (b"-----BEGIN PGP SIGNATURE-----\n\nwsBc\n", "armour of a PGP SIGNATURE,"),
        ];
        for (input, expect) in cases {
            match open_all(input.to_vec(), &ours, None, false) {
                Err(WrapError::PgpCorrupt(m)) => assert!(m.contains(expect), "{input:?}: {m}"),
                other => panic!("{input:?}: {:?}", other.map(|v| v.len())),
            }
        }
        let key = std::fs::read(&a.public).expect("read");
        match open_all(key, &ours, None, false) {
            Err(WrapError::PgpCorrupt(m)) => assert!(m.contains("not an OpenPGP message"), "{m}"),
            other => panic!("a key file: {:?}", other.map(|v| v.len())),
        }
    }

    /// Yields `total` bytes of text and notes how much output was already written when it
    /// reached `mark`.
    struct Source {
        made: usize,
        total: usize,
        mark: usize,
        written: Arc<Mutex<usize>>,
        written_at_mark: Option<usize>,
    }

    impl Read for Source {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.made >= self.mark && self.written_at_mark.is_none() {
                self.written_at_mark = Some(*self.written.lock().unwrap_or_else(|p| p.into_inner()));
            }
            let n = buf.len().min(self.total - self.made);
            for (i, b) in buf[..n].iter_mut().enumerate() {
                *b = b"0123456789abcdef,\n"[(self.made + i) % 18];
            }
            self.made += n;
            Ok(n)
        }
    }

    struct Sink {
        out: Vec<u8>,
        written: Arc<Mutex<usize>>,
    }

    impl Write for Sink {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.out.extend_from_slice(buf);
            *self.written.lock().unwrap_or_else(|p| p.into_inner()) += buf.len();
            Ok(buf.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn encryption_streams() {
        let a = pair("A <a@example.invalid>", None);
        let ours = OurKey::load(&a.secret, None).expect("ours");
        let to = PartnerKey::load(&a.public).expect("public");
        let written = Arc::new(Mutex::new(0));
        let total = 4 * 1024 * 1024;
        let mut source =
            Source { made: 0, total, mark: 3 * 1024 * 1024, written: written.clone(), written_at_mark: None };
        let mut sink = Sink { out: Vec::new(), written };
        encrypt(&mut source, &mut sink, &to, Some(&ours)).expect("encrypt");
        let before = source.written_at_mark.expect("the source got past the mark");
        assert!(before > 2 * 1024 * 1024, "only {before} bytes written when 3 MiB had been read");
        let plain = open_all(sink.out, &ours, Some(&to), true).expect("decrypts");
        assert_eq!(plain.len(), total);
    }

    #[test]
    fn a_failing_sink_is_the_drops() {
        let a = pair("A <a@example.invalid>", None);
        let to = PartnerKey::load(&a.public).expect("public");
        let mut full = [0u8; 100];
        let mut out: &mut [u8] = &mut full; // a writer that fills up: WriteZero after 100 bytes
        let e = encrypt(&mut &text(10_000)[..], &mut out, &to, None).expect_err("no room");
        assert!(matches!(&e, WrapError::Drop(io) if io.kind() == io::ErrorKind::WriteZero), "{e:?}");
    }

    #[test]
    fn keys_print_no_secrets_and_the_passphrase_is_checked() {
        let a = pair("A <a@example.invalid>", Some(PASS));
        let key = OurKey::load(&a.secret, Some(PASS)).expect("ours");
        let shown = format!("{key:?}");
        assert!(shown.contains("[redacted]") && !shown.contains(PASS), "{shown}");
        assert!(shown.contains(&key.fingerprint()), "{shown}");
        assert!(format!("{:?}", key.passphrase).eq("[redacted]"));
        assert!(matches!(OurKey::load(&a.secret, Some("nope")), Err(KeyError::WrongPassphrase { .. })));
        assert!(matches!(OurKey::load(&a.secret, None), Err(KeyError::PassphraseRequired { .. })));
        assert!(matches!(OurKey::load(&a.public, Some(PASS)), Err(KeyError::NotAKey { .. })));
        assert!(matches!(PartnerKey::load(&a.secret), Err(KeyError::NotAKey { .. })));
    }
}
