//! The OpenPGP unwrapping path under arbitrary and damaged input: never a panic, never a clean
//! end of a damaged message, every failure a typed verdict (in the fuzz pass of `.ci/run`).

use proptest::prelude::*;
use std::io::Read;
use std::sync::OnceLock;
use stitch_bridge::wrap::pgp::{self, OurKey, PartnerKey};
use stitch_bridge::wrap::WrapError;

/// `STITCH_BRIDGE_FUZZ_CASES` scales the run; each case costs a key agreement, so a fifth of the
/// parsers' count.
fn cases() -> u32 {
    let n: u32 = std::env::var("STITCH_BRIDGE_FUZZ_CASES").ok().and_then(|s| s.parse().ok()).unwrap_or(1000);
    (n / 5).max(20)
}

struct Keys {
    _dir: tempfile::TempDir,
    ours: OurKey,
    ours_public: PartnerKey,
    /// A valid message to us, signed by us, of `PLAIN`.
    message: Vec<u8>,
}

const PLAIN: &[u8] = b"sku,quantity\nRED,1\nBLUE,2\nGREEN,3\n";

/// One key pair for the whole run, made with rPGP itself (no gpg needed here).
fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| {
        use ::pgp::composed::{EncryptionCaps, KeyType, SecretKeyParamsBuilder, SubkeyParamsBuilder};
        let mut rng = rand08::thread_rng();
        let sub = SubkeyParamsBuilder::default()
            .key_type(KeyType::ECDH(::pgp::crypto::ecc_curve::ECCCurve::Curve25519Legacy))
            .can_encrypt(EncryptionCaps::All)
            .passphrase(None)
            .build()
            .unwrap();
        let key = SecretKeyParamsBuilder::default()
            .key_type(KeyType::Ed25519Legacy)
            .can_certify(true)
            .can_sign(true)
            .primary_user_id("fuzz <fuzz@example.com>".into())
            .passphrase(None)
            .subkey(sub)
            .build()
            .unwrap()
            .generate(&mut rng)
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let sec = dir.path().join("k.sec.asc");
        let public = dir.path().join("k.pub.asc");
        std::fs::write(&sec, key.to_armored_string(None.into()).unwrap()).unwrap();
        std::fs::write(&public, key.to_public_key().to_armored_string(None.into()).unwrap()).unwrap();
        let ours = OurKey::load(&sec, None).unwrap();
        let ours_public = PartnerKey::load(&public).unwrap();
        let mut message = Vec::new();
        pgp::encrypt(&mut &PLAIN[..], &mut message, &ours_public, Some(&ours)).unwrap();
        Keys { _dir: dir, ours, ours_public, message }
    })
}

/// Decrypts `bytes` to the end: the content, or the verdict. Panics only if a verdict is not one
/// of OpenPGP's (a drop failure cannot happen reading from memory).
fn open(bytes: Vec<u8>, require_signature: bool) -> Result<Vec<u8>, WrapError> {
    let k = keys();
    let mut r = pgp::decrypt(Box::new(std::io::Cursor::new(bytes)), &k.ours, Some(&k.ours_public), require_signature)?;
    let mut out = Vec::new();
    match r.read_to_end(&mut out) {
        Ok(_) => Ok(out),
        Err(e) => Err(WrapError::from_io(e)),
    }
}

fn is_openpgp_verdict(e: &WrapError) -> bool {
    matches!(e, WrapError::PgpCorrupt(_) | WrapError::PgpWrongKey { .. } | WrapError::PgpBadSignature(_))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_are_refused_with_a_verdict(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        match open(bytes, false) {
            Ok(out) => prop_assert!(out.is_empty() || out.len() < 4096, "no content from nothing"),
            Err(e) => prop_assert!(is_openpgp_verdict(&e), "{e:?}"),
        }
    }

    /// A valid message with bytes changed, cut off or extended: either exactly the content (the
    /// change fell where nothing is checked, e.g. an unused header bit) or a verdict.
    #[test]
    fn a_damaged_message_never_reads_as_other_content(
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
        cut in proptest::option::of(any::<prop::sample::Index>()),
    ) {
        let mut bytes = keys().message.clone();
        for (at, b) in &edits {
            let i = at.index(bytes.len());
            bytes[i] ^= b | 1;
        }
        if let Some(c) = cut {
            bytes.truncate(c.index(bytes.len()));
        }
        match open(bytes, true) {
            Ok(out) => prop_assert_eq!(out, PLAIN.to_vec()),
            Err(e) => prop_assert!(is_openpgp_verdict(&e), "{e:?}"),
        }
    }
}

#[test]
fn the_valid_message_reads_back() {
    assert_eq!(open(keys().message.clone(), true).unwrap(), PLAIN);
}
