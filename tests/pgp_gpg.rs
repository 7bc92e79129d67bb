//! OpenPGP against the real GnuPG: keys made and exported by `gpg` load (or are refused for the
//! right reason), messages `gpg` encrypts and signs decrypt to the exact bytes, what we encrypt
//! and sign `gpg --decrypt` reads with a good signature, and every damaged or unwanted message
//! is refused with its own error. Without `gpg` the tests skip, unless
//! `STITCH_BRIDGE_REQUIRE_GPG=1` makes them fail.

#[path = "support_pgp/mod.rs"]
mod support_pgp;

use std::io::{self, Read};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use stitch_bridge::wrap::pgp::{decrypt, encrypt, KeyError, OurKey, PartnerKey};
use stitch_bridge::wrap::WrapError;
use support_pgp::{gpg_available, Gpg, Key, PASSPHRASE};

/// CSV-like text that compresses (so gpg's default compression is exercised), `n` lines.
fn csv(n: usize, seed: u64) -> Vec<u8> {
    let mut out = b"sku,warehouse,on_hand,note\n".to_vec();
    let mut x = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    for i in 0..n {
        x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        out.extend(format!("SKU-{i:07},WH{},{},\"lot {:016x}\"\n", x % 7, (x >> 20) % 10_000, x).as_bytes());
    }
    out
}

/// Reads the decrypted stream to its end through a `buf`-byte buffer; an error ends it. A second
/// read after an error must fail again (a bad file never ends cleanly).
fn read_through(mut r: Box<dyn Read + Send + '_>, buf: usize) -> Result<Vec<u8>, WrapError> {
    let mut out = Vec::new();
    let mut chunk = vec![0u8; buf];
    loop {
        match r.read(&mut chunk) {
            Ok(0) => return Ok(out),
            Ok(n) => out.extend_from_slice(&chunk[..n]),
            Err(e) => {
                let again = r.read(&mut chunk);
                assert!(again.is_err(), "a read after an error must fail again, got {again:?}");
                return Err(WrapError::from_io(e));
            }
        }
    }
}

/// Decrypts `msg` (as a drop stream) to its end.
fn open(
    msg: &[u8],
    ours: &OurKey,
    partner: Option<&PartnerKey>,
    require: bool,
    buf: usize,
) -> Result<Vec<u8>, WrapError> {
    let input: Box<dyn Read + Send> = Box::new(io::Cursor::new(msg.to_vec()));
    read_through(decrypt(input, ours, partner, require)?, buf)
}

fn load_ours(g: &Gpg, k: &Key, armor: bool) -> OurKey {
    let path = g.write(&format!("{}-{armor}.sec", k.fpr), &g.export_secret(&k.fpr, armor));
    OurKey::load(&path, Some(PASSPHRASE)).expect("our key loads")
}

fn load_partner(g: &Gpg, k: &Key, armor: bool) -> PartnerKey {
    let path = g.write(&format!("{}-{armor}.pub", k.fpr), &g.export_public(&k.fpr, armor));
    PartnerKey::load(&path).expect("partner key loads")
}

/// `gpg --encrypt` to `to`, signed by `signer` when given, with extra options.
fn gpg_encrypt(g: &Gpg, plain: &[u8], to: &Key, signer: Option<&Key>, extra: &[&str]) -> Vec<u8> {
    let mut args: Vec<&str> = extra.to_vec();
    args.extend(["--recipient", &to.fpr]);
    if let Some(s) = signer {
        args.extend(["--local-user", &s.fpr, "--sign"]);
    }
    args.push("--encrypt");
    g.ok(&args, plain)
}

/// The recipient key ids `gpg --list-packets` reports for a message.
fn gpg_recipients(g: &Gpg, msg: &[u8]) -> Vec<String> {
    g.list_packets(msg)
        .lines()
        .filter(|l| l.starts_with(":pubkey enc packet:"))
        .filter_map(|l| l.split("keyid ").nth(1))
        .map(|id| format!("0x{}", id.trim()))
        .collect()
}

/// One key family end to end: gpg → us (armoured and binary keys and messages, compressed or
/// not, signed or not, a multi-MB one through a small buffer), us → gpg (signed, checked with
/// gpg's status output), and us → us.
fn round_trips(g: &Gpg, ours_key: &Key, partner_key: &Key) {
    for armor in [false, true] {
        let ours = load_ours(g, ours_key, armor);
        let partner = load_partner(g, partner_key, armor);
        assert_eq!(ours.fingerprint(), ours_key.fpr);
        assert_eq!(partner.fingerprints(), vec![partner_key.fpr.clone()]);

        let plain = csv(200, 1);
        let cases: [(&str, &[&str]); 4] = [
            ("binary, compressed", &[]),
            ("armoured, compressed", &["--armor"]),
            ("binary, uncompressed", &["--compress-algo", "none"]),
            ("armoured, bzip2", &["--armor", "--compress-algo", "bzip2"]),
        ];
        for (what, extra) in cases {
            let signed = gpg_encrypt(g, &plain, ours_key, Some(partner_key), extra);
            let listing = g.list_packets(&signed);
            let compressed = !extra.contains(&"none");
            assert_eq!(listing.contains(":compressed packet:"), compressed, "{what}: {listing}");
            assert!(listing.contains("mdc_method: 2"), "{what}: gpg 2.2 writes SEIPDv1 with MDC: {listing}");
            let got = open(&signed, &ours, Some(&partner), true, 4096).unwrap_or_else(|e| panic!("{what}: {e}"));
            assert!(got == plain, "{what}: decrypted bytes differ");

            let unsigned = gpg_encrypt(g, &plain, ours_key, None, extra);
            let got = open(&unsigned, &ours, Some(&partner), false, 4096).unwrap_or_else(|e| panic!("{what}: {e}"));
            assert!(got == plain, "{what}, unsigned: decrypted bytes differ");
        }

        // Armour with CRLF line ends (a Windows partner's tools, or a transfer in text mode).
        let armoured = gpg_encrypt(g, &plain, ours_key, Some(partner_key), &["--armor"]);
        let crlf = String::from_utf8(armoured).expect("armour is text").replace('\n', "\r\n");
        assert!(open(crlf.as_bytes(), &ours, Some(&partner), true, 4096).expect("CRLF armour") == plain);

        // Binary data (every byte value), not text: exact bytes, no line-ending games.
        let binary: Vec<u8> = (0..70_000u32).map(|i| (i * 7 % 256) as u8).collect();
        let msg = gpg_encrypt(g, &binary, ours_key, Some(partner_key), &["--compress-algo", "none"]);
        assert!(open(&msg, &ours, Some(&partner), true, 1000).expect("binary payload") == binary);
    }

    let ours = load_ours(g, ours_key, true);
    let partner = load_partner(g, partner_key, false);

    // A multi-MB file through a 7-byte buffer; memory stays flat: the first plaintext arrives
    // long before the input is consumed.
    let big = csv(120_000, 2);
    assert!(big.len() > 5_000_000);
    let msg = gpg_encrypt(g, &big, ours_key, Some(partner_key), &[]);
    let consumed = Arc::new(AtomicU64::new(0));
    let counting: Box<dyn Read + Send> =
        Box::new(Counting { inner: io::Cursor::new(msg.clone()), count: consumed.clone() });
    let mut r = decrypt(counting, &ours, Some(&partner), true).expect("decrypt big");
    let mut first = vec![0u8; 64 * 1024];
    r.read_exact(&mut first).expect("first 64 KiB");
    let at_first = consumed.load(Ordering::SeqCst);
    assert!(at_first < msg.len() as u64 / 4, "read {at_first} of {} input bytes for the first 64 KiB", msg.len());
    let mut rest = read_through(r, 7).expect("rest of the big file");
    first.append(&mut rest);
    assert!(first == big, "big file differs");

    // Ours → gpg: encrypted to the partner, signed by us.
    for sign in [true, false] {
        let plain = csv(3000, 3);
        let mut out = Vec::new();
        encrypt(&mut &plain[..], &mut out, &partner, sign.then_some(&ours)).expect("encrypt");
        let listing = g.list_packets(&out);
        assert!(listing.contains("mdc_method: 2"), "SEIPDv1 with MDC: {listing}");
        assert_eq!(
            gpg_recipients(g, &out),
            partner_key.encrypt_ids.iter().map(|i| format!("0x{i}")).collect::<Vec<_>>()
        );
        let (got, status, ok) = g.decrypt(&out);
        assert!(ok, "gpg --decrypt failed: {status}");
        assert!(got == plain, "gpg decrypted other bytes");
        assert!(status.contains("[GNUPG:] DECRYPTION_OKAY"), "{status}");
        assert!(status.contains("[GNUPG:] GOODMDC"), "{status}");
        if sign {
            assert!(status.contains(&format!("[GNUPG:] GOODSIG {} ", ours_key.id)), "{status}");
            let validsig = status.lines().find(|l| l.starts_with("[GNUPG:] VALIDSIG ")).expect("VALIDSIG");
            assert!(validsig.split(' ').any(|f| f == ours_key.fpr), "{validsig}");
        } else {
            assert!(!status.contains("GOODSIG") && !status.contains("VALIDSIG"), "unsigned: {status}");
        }
    }

    // Ours → ours (the partner's role played by our decrypt with the partner's secret key).
    let partner_as_ours = load_ours(g, partner_key, false);
    let ours_as_partner = load_partner(g, ours_key, true);
    let plain = csv(500, 4);
    let mut out = Vec::new();
    encrypt(&mut &plain[..], &mut out, &partner, Some(&ours)).expect("encrypt");
    assert!(open(&out, &partner_as_ours, Some(&ours_as_partner), true, 333).expect("round trip") == plain);
}

struct Counting<R> {
    inner: R,
    count: Arc<AtomicU64>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count.fetch_add(n as u64, Ordering::SeqCst);
        Ok(n)
    }
}

#[test]
fn rsa_keys_made_by_gpg() {
    if !gpg_available() {
        return;
    }
    let g = Gpg::new();
    eprintln!("{}", g.version());
    let ours = g.rsa("Ours RSA <ours-rsa@example.invalid>");
    let partner = g.rsa("Partner RSA <partner-rsa@example.invalid>");
    round_trips(&g, &ours, &partner);
}

#[test]
fn curve25519_keys_made_by_gpg() {
    if !gpg_available() {
        return;
    }
    let g = Gpg::new();
    let ours = g.curve25519("Ours Curve <ours-cv@example.invalid>");
    let partner = g.curve25519("Partner Curve <partner-cv@example.invalid>");
    round_trips(&g, &ours, &partner);
}

/// A key from one family decrypts a message from the other: RSA partner, Curve25519 us.
#[test]
fn mixed_families() {
    if !gpg_available() {
        return;
    }
    let g = Gpg::new();
    let ours_key = g.curve25519("Ours Curve <ours-mix@example.invalid>");
    let partner_key = g.rsa("Partner RSA <partner-mix@example.invalid>");
    let ours = load_ours(&g, &ours_key, false);
    let partner = load_partner(&g, &partner_key, true);
    let plain = csv(100, 5);
    let msg = gpg_encrypt(&g, &plain, &ours_key, Some(&partner_key), &["--armor"]);
    assert!(open(&msg, &ours, Some(&partner), true, 4096).expect("mixed") == plain);
}

fn corrupt(r: Result<Vec<u8>, WrapError>, what: &str) -> String {
    match r {
        Err(WrapError::PgpCorrupt(m)) => m,
        other => panic!("{what}: expected PgpCorrupt, got {:?}", other.map(|v| v.len())),
    }
}

fn bad_signature(r: Result<Vec<u8>, WrapError>, what: &str) -> String {
    match r {
        Err(WrapError::PgpBadSignature(m)) => m,
        other => panic!("{what}: expected PgpBadSignature, got {:?}", other.map(|v| v.len())),
    }
}

#[test]
fn refused_messages() {
    if !gpg_available() {
        return;
    }
    let g = Gpg::new();
    let ours_key = g.curve25519("Ours <ours-refuse@example.invalid>");
    let partner_key = g.curve25519("Partner <partner-refuse@example.invalid>");
    let stranger_key = g.curve25519("Stranger <stranger@example.invalid>");
    let ours = load_ours(&g, &ours_key, true);
    let partner = load_partner(&g, &partner_key, true);
    let plain = csv(5000, 6);
    let counts = g.protect_counts(&g.export_secret(&ours_key.fpr, false));
    assert!(!counts.is_empty() && counts.iter().all(|&c| c == 65536), "the test home's cheap S2K: {counts:?}");

    // Encrypted to a key that is not ours: the error names the key id gpg reports.
    let msg = gpg_encrypt(&g, &plain, &stranger_key, Some(&partner_key), &[]);
    let reported = gpg_recipients(&g, &msg);
    assert_eq!(reported.len(), 1);
    match open(&msg, &ours, Some(&partner), false, 4096) {
        Err(WrapError::PgpWrongKey { key_ids, message }) => {
            assert_eq!(key_ids, reported);
            assert!(message.contains(&reported[0]), "{message}");
            assert!(message.contains(&format!("0x{}", ours_key.encrypt_ids[0])), "names ours too: {message}");
        }
        other => panic!("wrong key: {:?}", other.map(|v| v.len())),
    }

    // Hidden recipients (gpg --throw-keyids): ours decrypts; a stranger's is the wrong key.
    let hidden = gpg_encrypt(&g, &plain, &ours_key, Some(&partner_key), &["--throw-keyids"]);
    assert_eq!(gpg_recipients(&g, &hidden), vec!["0x0000000000000000".to_string()]);
    assert!(open(&hidden, &ours, Some(&partner), true, 4096).expect("hidden recipient, ours") == plain);
    let hidden = gpg_encrypt(&g, &plain, &stranger_key, None, &["--throw-keyids"]);
    match open(&hidden, &ours, Some(&partner), false, 4096) {
        Err(WrapError::PgpWrongKey { key_ids, message }) => {
            assert_eq!(key_ids, vec!["0x0000000000000000".to_string()]);
            assert!(message.contains("hidden recipient"), "{message}");
        }
        other => panic!("hidden, not ours: {:?}", other.map(|v| v.len())),
    }

    // Encrypted with a passphrase only.
    let sym = g.ok(&["--symmetric"], &plain);
    assert!(matches!(open(&sym, &ours, None, false, 4096), Err(WrapError::PgpWrongKey { .. })));

    // Truncated, binary and armoured, at several points: never a clean end.
    let good = gpg_encrypt(&g, &plain, &ours_key, Some(&partner_key), &["--compress-algo", "none"]);
    let armoured = gpg_encrypt(&g, &plain, &ours_key, Some(&partner_key), &["--armor"]);
    // (The armoured message ends in its checksum line and the footer; a cut 40 bytes before the
    // end takes the last base64 data with it.)
    for (name, m, last) in [("binary", &good, 1), ("armoured", &armoured, 40)] {
        for cut in [m.len() / 3, m.len() / 2, m.len() - 30, m.len() - last] {
            let r = open(&m[..cut], &ours, Some(&partner), false, 4096);
            corrupt(r, &format!("{name} cut at {cut} of {}", m.len()));
        }
    }

    // A flipped byte in the encrypted data: the MDC catches it, at the end of the stream.
    let mut flipped = good.clone();
    let at = flipped.len() / 2;
    flipped[at] ^= 0x01;
    let m = corrupt(open(&flipped, &ours, Some(&partner), false, 4096), "flipped byte");
    assert!(m.contains("integrity"), "{m}");

    // No integrity protection (gpg --rfc2440 writes a SED packet without MDC; gpg itself
    // refuses to decrypt it).
    let sed = gpg_encrypt(&g, &plain, &ours_key, None, &["--rfc2440"]);
    let listing = g.list_packets(&sed);
    assert!(listing.contains(":encrypted data packet:") && !listing.contains("mdc_method"), "{listing}");
    let (_, status, ok) = g.decrypt(&sed);
    assert!(!ok && status.contains("DECRYPTION_FAILED"), "gpg refuses it too: {status}");
    let m = corrupt(open(&sed, &ours, Some(&partner), false, 4096), "no MDC");
    assert!(m.contains("integrity protection"), "{m}");

    // Unsigned with a signature required; accepted when not required.
    let unsigned = gpg_encrypt(&g, &plain, &ours_key, None, &[]);
    let m = bad_signature(open(&unsigned, &ours, Some(&partner), true, 4096), "unsigned");
    assert!(m.contains("not signed"), "{m}");
    assert!(open(&unsigned, &ours, Some(&partner), false, 4096).expect("unsigned, not required") == plain);

    // Signed by another key with a signature required; accepted (unchecked) when not required.
    let by_stranger = gpg_encrypt(&g, &plain, &ours_key, Some(&stranger_key), &[]);
    let m = bad_signature(open(&by_stranger, &ours, Some(&partner), true, 4096), "stranger's signature");
    assert!(m.contains(&stranger_key.fpr), "names the signer: {m}");
    assert!(open(&by_stranger, &ours, Some(&partner), false, 4096).expect("stranger, not required") == plain);
    // With a signature required and no partner key at all.
    bad_signature(open(&by_stranger, &ours, None, true, 4096), "no partner key");

    // A signature by the partner's key that does not verify: always refused. gpg signs, one byte
    // of the signed data changes, and the packets are encrypted to us with integrity protection
    // (so only the signature can object). gpg agrees the signature is bad.
    let signed = g.ok(&["--local-user", &partner_key.fpr, "--compress-algo", "none", "--sign"], b"qty,42\n");
    let at = memchr::memmem::find(&signed, b"qty,42").expect("literal data in the signed packets");
    let mut tampered = signed.clone();
    tampered[at + 4] = b'9';
    let ours_public = g.export_public(&ours_key.fpr, false);
    let wrapped_good = encrypt_packets(&ours_public, &signed);
    let wrapped_bad = encrypt_packets(&ours_public, &tampered);
    let (got, status, _) = g.decrypt(&wrapped_good);
    assert!(got == b"qty,42\n" && status.contains("GOODSIG"), "the assembly is sound: {status}");
    let (_, status, _) = g.decrypt(&wrapped_bad);
    assert!(status.contains("BADSIG"), "gpg: bad signature: {status}");
    assert!(open(&wrapped_good, &ours, Some(&partner), true, 4096).expect("good assembled") == b"qty,42\n");
    for require in [true, false] {
        let m = bad_signature(open(&wrapped_bad, &ours, Some(&partner), require, 4096), "tampered");
        assert!(m.contains(&partner_key.id), "names the partner's key: {m}");
    }

    // Plain CSV named .pgp, and other non-messages.
    let m = corrupt(open(&plain, &ours, Some(&partner), false, 4096), "plain text");
    assert!(m.contains("not an OpenPGP message"), "{m}");
    let key_file = g.export_public(&partner_key.fpr, false);
    let m = corrupt(open(&key_file, &ours, None, false, 4096), "a key");
    assert!(m.contains("key"), "{m}");
    corrupt(open(b"", &ours, None, false, 4096), "empty");
    let signed_only = g.ok(&["--local-user", &partner_key.fpr, "--sign"], &plain);
    let m = corrupt(open(&signed_only, &ours, Some(&partner), false, 4096), "signed, not encrypted");
    assert!(m.contains("not encrypted"), "{m}");
}

/// `packets` encrypted to the (first) encryption subkey of `recipient` as PKESK + SEIPDv1: what
/// gpg writes, but around packets of our choosing. Only for the one fault gpg cannot make: a
/// bad signature inside an intact encryption layer.
fn encrypt_packets(recipient: &[u8], packets: &[u8]) -> Vec<u8> {
    use pgp::composed::{Deserializable, RawSessionKey, SignedPublicKey};
    use pgp::crypto::sym::SymmetricKeyAlgorithm;
    use pgp::packet::{PacketTrait, PublicKeyEncryptedSessionKey, SymEncryptedProtectedData};
    use rand08::RngCore;

    let (cert, _) = SignedPublicKey::from_reader_single(recipient).expect("recipient");
    let sub = &cert.public_subkeys[0].key;
    let mut rng = rand08::thread_rng();
    let mut key = [0u8; 32];
    rng.fill_bytes(&mut key);
    let session = RawSessionKey::from(&key[..]);
    let alg = SymmetricKeyAlgorithm::AES256;
    let pkesk = PublicKeyEncryptedSessionKey::from_session_key_v3(&mut rng, &session, alg, sub).expect("pkesk");
    let seipd = SymEncryptedProtectedData::encrypt_seipdv1(&mut rng, alg, &key, packets).expect("seipd");
    let mut out = Vec::new();
    pkesk.to_writer_with_header(&mut out).expect("write pkesk");
    seipd.to_writer_with_header(&mut out).expect("write seipd");
    out
}

fn key_error<T: std::fmt::Debug>(r: Result<T, KeyError>, what: &str) -> KeyError {
    match r {
        Err(e) => e,
        Ok(k) => panic!("{what}: expected a key error, got {k:?}"),
    }
}

#[test]
fn key_loading_errors() {
    if !gpg_available() {
        return;
    }
    let g = Gpg::new();
    let good = g.curve25519("Good <good@example.invalid>");
    let sec = g.write("good.sec", &g.export_secret(&good.fpr, true));
    let pubk = g.write("good.pub", &g.export_public(&good.fpr, true));

    // Wrong or missing passphrase; the error does not repeat the passphrase.
    let e = key_error(OurKey::load(&sec, Some("not the passphrase")), "wrong passphrase");
    assert!(matches!(e, KeyError::WrongPassphrase { .. }), "{e:?}");
    let text = e.to_string();
    assert!(text.contains("good.sec") && !text.contains("not the passphrase"), "{text}");
    let e = key_error(OurKey::load(&sec, None), "no passphrase");
    assert!(matches!(e, KeyError::PassphraseRequired { .. }), "{e:?}");

    // A key without passphrase needs none.
    let open_key = g.generate(
        "Open <open@example.invalid>",
        ("ed25519", "sign,cert"),
        &[("cv25519", "encr")],
        "never",
        &["--passphrase", ""],
    );
    let open_sec = g.write("open.sec", &g.export_secret(&open_key.fpr, false));
    OurKey::load(&open_sec, None).expect("an unprotected key loads without passphrase");

    // Expired: made two years ago with a one-year expiry.
    let old = g.generate(
        "Old <old@example.invalid>",
        ("ed25519", "sign,cert"),
        &[("cv25519", "encr")],
        "1y",
        &["--faked-system-time", "20200101T000000!"],
    );
    let old_sec = g.write("old.sec", &g.export_secret(&old.fpr, false));
    let old_pub = g.write("old.pub", &g.export_public(&old.fpr, false));
    let e = key_error(OurKey::load(&old_sec, Some(PASSPHRASE)), "expired secret");
    assert!(matches!(&e, KeyError::Expired { expired, .. } if expired.starts_with("2020-12-31")), "{e:?}");
    let e = key_error(PartnerKey::load(&old_pub), "expired public");
    assert!(matches!(e, KeyError::Expired { .. }), "{e:?}");
    // ... and valid as of a time before it expired.
    let back_then = SystemTime::UNIX_EPOCH + Duration::from_secs(1_590_000_000); // 2020-05
    OurKey::load_at(&old_sec, Some(PASSPHRASE), back_then).expect("valid in 2020");
    PartnerKey::load_at(&old_pub, back_then).expect("valid in 2020");

    // Expiring: valid now, expired as of a `now` past its expiry.
    let soon = g.generate("Soon <soon@example.invalid>", ("ed25519", "sign,cert"), &[("cv25519", "encr")], "2d", &[]);
    let soon_pub = g.write("soon.pub", &g.export_public(&soon.fpr, false));
    PartnerKey::load(&soon_pub).expect("valid today");
    let later = SystemTime::now() + Duration::from_secs(3 * 86_400);
    assert!(matches!(key_error(PartnerKey::load_at(&soon_pub, later), "later"), KeyError::Expired { .. }));

    // Subkey expiry: an encryption subkey made an hour ago that expires in a day, and a newer one
    // that does not. We encrypt to the newest valid one, as gpg does; once the first expired, to
    // the second still; a key whose only encryption subkey expired cannot encrypt or decrypt.
    let hour_ago = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).expect("clock").as_secs() - 3600;
    let faked = format!("{hour_ago}!");
    let before = ["--faked-system-time", faked.as_str()];
    let rot = g.generate("Rotating <rot@example.invalid>", ("ed25519", "sign,cert"), &[], "never", &before);
    g.ok(&["--faked-system-time", &faked, "--quick-add-key", &rot.fpr, "cv25519", "encr", "1d"], b"");
    let rot = g.key(&rot.fpr);
    let only_expiring_sec = g.write("rot1.sec", &g.export_secret(&rot.fpr, false));
    let only_expiring_pub = g.write("rot1.pub", &g.export_public(&rot.fpr, false));
    let in_two_days = SystemTime::now() + Duration::from_secs(2 * 86_400);
    match OurKey::load_at(&only_expiring_sec, Some(PASSPHRASE), in_two_days) {
        Err(KeyError::CannotDecrypt { reason, .. }) => assert!(reason.contains("expired on"), "{reason}"),
        other => panic!("only an expired encryption subkey: {other:?}"),
    }
    let p = PartnerKey::load_at(&only_expiring_pub, in_two_days).expect("the primary is valid");
    assert!(matches!(p.check_can_encrypt_at(in_two_days), Err(KeyError::CannotEncrypt { .. })));
    g.ok(&["--quick-add-key", &rot.fpr, "cv25519", "encr", "never"], b"");
    let rot = g.key(&rot.fpr);
    assert_eq!(rot.encrypt_ids.len(), 2);
    let rotating = load_partner(&g, &rot, false);
    let mut out = Vec::new();
    encrypt(&mut &b"r,1\n"[..], &mut out, &rotating, None).expect("encrypt");
    let gpg_choice = gpg_recipients(&g, &gpg_encrypt(&g, b"r,1\n", &rot, None, &[]));
    assert_eq!(gpg_recipients(&g, &out), gpg_choice, "the subkey gpg picks");
    assert_eq!(gpg_choice, vec![format!("0x{}", rot.encrypt_ids[1])], "the newer subkey");
    let path = g.write("rot2.pub", &g.export_public(&rot.fpr, false));
    PartnerKey::load_at(&path, in_two_days).expect("loads").check_can_encrypt_at(in_two_days).expect("the newer one");

    // Revoked with the certificate gpg wrote at generation.
    let gone = g.curve25519("Gone <gone@example.invalid>");
    g.revoke(&gone.fpr);
    let gone_sec = g.write("gone.sec", &g.export_secret(&gone.fpr, true));
    let gone_pub = g.write("gone.pub", &g.export_public(&gone.fpr, false));
    let e = key_error(OurKey::load(&gone_sec, Some(PASSPHRASE)), "revoked secret");
    assert!(matches!(e, KeyError::Revoked { .. }), "{e:?}");
    let e = key_error(PartnerKey::load(&gone_pub), "revoked public");
    assert!(matches!(e, KeyError::Revoked { .. }), "{e:?}");

    // Sign-only: cannot decrypt (ours), cannot encrypt (partner), loads for verifying.
    let signer = g.generate("Signer <signer@example.invalid>", ("ed25519", "sign,cert"), &[], "never", &[]);
    let signer_sec = g.write("signer.sec", &g.export_secret(&signer.fpr, false));
    let signer_pub = g.write("signer.pub", &g.export_public(&signer.fpr, true));
    let e = key_error(OurKey::load(&signer_sec, Some(PASSPHRASE)), "sign-only secret");
    assert!(matches!(e, KeyError::CannotDecrypt { .. }), "{e:?}");
    let p = PartnerKey::load(&signer_pub).expect("a sign-only partner key loads for verifying");
    let e = key_error(p.check_can_encrypt().map(|()| "can encrypt"), "sign-only public");
    assert!(matches!(e, KeyError::CannotEncrypt { .. }), "{e:?}");
    let mut out = Vec::new();
    match encrypt(&mut &b"x"[..], &mut out, &p, None) {
        // Not a verdict on a file: the operator's key problem, as the drop's kind of failure.
        Err(WrapError::Drop(e)) => {
            let inner = e.get_ref().and_then(|i| i.downcast_ref::<KeyError>());
            assert!(matches!(inner, Some(KeyError::CannotEncrypt { .. })), "{e:?}");
        }
        other => panic!("encrypting to a sign-only key: {other:?}"),
    }
    assert!(out.is_empty(), "nothing written");
    load_partner(&g, &good, false).check_can_encrypt().expect("a normal key can encrypt");
    OurKey::load(&sec, Some(PASSPHRASE)).expect("loads").check_can_sign().expect("ed25519 primary signs");

    // Encrypt-only subkey of ours and a sign-only primary that gpg marks "cert" only.
    let cert_only =
        g.generate("CertOnly <cert-only@example.invalid>", ("ed25519", "cert"), &[("cv25519", "encr")], "never", &[]);
    let co = g.write("certonly.sec", &g.export_secret(&cert_only.fpr, false));
    let co = OurKey::load(&co, Some(PASSPHRASE)).expect("decrypts with its subkey");
    assert!(matches!(co.check_can_sign(), Err(KeyError::CannotSign { .. })));

    // Only the subkeys' secrets (gpg --export-secret-subkeys: the primary is a stub): decrypts,
    // cannot sign.
    let subs = g.ok(&["--export-secret-subkeys", &good.fpr], b"");
    assert!(g.list_packets(&subs).contains("gnu-dummy"), "a stub primary");
    let subs = OurKey::load(&g.write("subs.sec", &subs), Some(PASSPHRASE)).expect("subkeys only");
    let msg = gpg_encrypt(&g, b"s,1\n", &good, None, &[]);
    assert!(open(&msg, &subs, None, false, 64).expect("decrypts with the subkey") == b"s,1\n");
    match subs.check_can_sign() {
        Err(KeyError::CannotSign { reason, .. }) => assert!(reason.contains("no secret part"), "{reason}"),
        other => panic!("stub primary signs? {other:?}"),
    }

    // Only a signing subkey's secret (`SUBKEY!` exports just that one, with a stub primary and
    // without the other subkeys): nothing here decrypts.
    let split = g.generate(
        "Split <split@example.invalid>",
        ("ed25519", "cert"),
        &[("ed25519", "sign"), ("cv25519", "encr")],
        "never",
        &[],
    );
    let colons = String::from_utf8(g.ok(&["--with-colons", "--list-keys", &split.fpr], b"")).expect("utf-8");
    let sign_sub = colons
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| f[0] == "sub" && f[11].contains('s'))
        .map(|f| f[4].to_string())
        .expect("signing subkey");
    let only_sign = g.ok(&["--export-secret-subkeys", &format!("{sign_sub}!")], b"");
    match OurKey::load(&g.write("split.sec", &only_sign), Some(PASSPHRASE)) {
        Err(KeyError::CannotDecrypt { reason, .. }) => assert!(reason.contains("no encryption subkey"), "{reason}"),
        other => panic!("a key file without the encryption secret: {other:?}"),
    }

    // A keyring of several partner keys: all load, a message signed by either verifies.
    let other = g.rsa("Other <other@example.invalid>");
    let mut ring = g.export_public(&good.fpr, true);
    ring.extend(g.export_public(&other.fpr, true));
    let ring_path = g.write("ring.asc", &ring);
    let partners = PartnerKey::load(&ring_path).expect("keyring");
    assert_eq!(partners.fingerprints(), vec![good.fpr.clone(), other.fpr.clone()]);
    let both = g.ok(&["--export", &good.fpr, &other.fpr], b"");
    let partners = PartnerKey::load(&g.write("ring.gpg", &both)).expect("binary keyring");
    assert_eq!(partners.fingerprints().len(), 2);
    let ours = OurKey::load(&open_sec, None).expect("ours");
    let msg = gpg_encrypt(&g, b"a,b\n", &open_key, Some(&other), &[]);
    assert!(open(&msg, &ours, Some(&partners), true, 64).expect("signed by the second key") == b"a,b\n");
    // ... and what we encrypt to the keyring, each of them can read.
    let mut out = Vec::new();
    encrypt(&mut &b"x,y\n"[..], &mut out, &partners, None).expect("encrypt to the keyring");
    let mut to: Vec<String> = gpg_recipients(&g, &out);
    to.sort();
    let mut expected: Vec<String> = [&good, &other].iter().map(|k| format!("0x{}", k.encrypt_ids[0])).collect();
    expected.sort();
    assert_eq!(to, expected);

    // Not keys at all, the wrong kind of key, a missing file.
    let e = key_error(OurKey::load(&pubk, Some(PASSPHRASE)), "public as secret");
    assert!(matches!(&e, KeyError::NotAKey { reason, .. } if reason.contains("public key")), "{e:?}");
    let e = key_error(PartnerKey::load(&sec), "secret as public");
    assert!(matches!(&e, KeyError::NotAKey { reason, .. } if reason.contains("secret key")), "{e:?}");
    let junk = g.write("junk.asc", b"sku,qty\nA,1\n");
    assert!(matches!(key_error(PartnerKey::load(&junk), "junk"), KeyError::NotAKey { .. }));
    let empty = g.write("empty.asc", b"");
    assert!(matches!(key_error(OurKey::load(&empty, None), "empty"), KeyError::NotAKey { .. }));
    let missing = g.home().join("missing.asc");
    let e = key_error(PartnerKey::load(&missing), "missing");
    assert!(matches!(e, KeyError::Unreadable { .. }) && e.to_string().contains("missing.asc"), "{e}");
}

#[test]
fn debug_output_shows_no_secrets() {
    if !gpg_available() {
        return;
    }
    // gpg's default protection here: the key an operator exports loads as it is.
    let g = Gpg::with_default_protection();
    let k = g.rsa("Secretive <secretive@example.invalid>");
    let secret = g.export_secret(&k.fpr, false);
    assert!(g.protect_counts(&secret).iter().all(|&c| c > 1_000_000), "default S2K count");
    let path = g.write("secretive.sec", &secret);
    let key = OurKey::load(&path, Some(PASSPHRASE)).expect("loads");
    let plain = csv(50, 7);
    let msg = gpg_encrypt(&g, &plain, &k, None, &[]);
    assert!(open(&msg, &key, None, false, 4096).expect("decrypts with the default protection") == plain);
    for shown in [format!("{key:?}"), format!("{key:#?}")] {
        assert!(!shown.contains(PASSPHRASE), "{shown}");
        assert!(shown.contains("[redacted]") && shown.contains(&k.fpr), "{shown}");
        // The only long hex run is the fingerprint: no key material, encrypted or not.
        let mut run = String::new();
        for c in shown.chars().chain(std::iter::once(' ')) {
            if c.is_ascii_hexdigit() {
                run.push(c.to_ascii_uppercase());
                continue;
            }
            if run.len() >= 16 {
                assert_eq!(run, k.fpr, "unexpected hex in {shown}");
            }
            run.clear();
        }
        assert!(shown.len() < 400, "{shown}");
    }
}

/// rPGP logs secret key material at debug level (its secret key parser prints the secret part in
/// hex); the target guard keeps it out of any log, even one whose filter enables that target.
#[test]
fn rpgp_debug_logs_are_kept_out() {
    use tracing_subscriber::filter::{filter_fn, EnvFilter};
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::Layer;

    if !gpg_available() {
        return;
    }
    let raw = Capture::default();
    let guarded = Capture::default();
    let (r, gd) = (raw.clone(), guarded.clone());
    // Only the parser's target: the other tests of this binary stay out of the buffers.
    let parser = "pgp::packet::secret_key_parser=debug";
    tracing_subscriber::registry()
        .with(tracing_subscriber::fmt::layer().with_writer(move || r.clone()).with_filter(EnvFilter::new(parser)))
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(move || gd.clone())
                .with_filter(EnvFilter::new(parser))
                .with_filter(filter_fn(|m| !stitch_bridge::wrap::pgp::is_rpgp_log_target(m.target()))),
        )
        .try_init()
        .expect("the only subscriber of this test binary");

    let g = Gpg::new();
    let k = g.generate(
        "Open <open-log@example.invalid>",
        ("ed25519", "sign,cert"),
        &[("cv25519", "encr")],
        "never",
        &["--passphrase", ""],
    );
    let secret = g.export_secret(&k.fpr, false);
    OurKey::load(&g.write("open-log.sec", &secret), None).expect("loads");
    let secret_hex = hex::encode(&secret);
    let raw = raw.text();
    let leaked = raw
        .lines()
        .filter_map(|l| l.split("rest: ").nth(1))
        .any(|h| h.trim().len() >= 64 && secret_hex.contains(h.trim()));
    assert!(leaked, "without the guard rPGP logs the key's secret part: {}", raw.len());
    let guarded = guarded.text();
    assert!(!guarded.contains("rest: ") && !guarded.contains("secret_key_parser"), "{guarded}");
}

#[derive(Clone, Default)]
struct Capture(Arc<std::sync::Mutex<Vec<u8>>>);

impl Capture {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap_or_else(|p| p.into_inner())).into_owned()
    }
}

impl io::Write for Capture {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).extend_from_slice(b);
        Ok(b.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
