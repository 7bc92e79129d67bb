//! Property tests: no input makes the gzip or zip layers panic; every failure is a typed
//! verdict on the file (`BadArchive`, `TooLarge`), never the drop's when the drop did not fail;
//! whatever a damaged stream still gives is the original content (the CRCs hold it); and a drop
//! failure anywhere in a valid stream comes out as that failure.

use flate2::write::GzEncoder;
use flate2::Compression;
use proptest::prelude::*;
use std::io::{self, Cursor, Read, Write};
use stitch_bridge::wrap::archive::ZipMembers;
use stitch_bridge::wrap::{unwrap_stream, Layer, WrapError};
use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, ZipWriter};

/// `STITCH_BRIDGE_FUZZ_CASES` scales the run (default 1000 per property).
fn cases() -> u32 {
    std::env::var("STITCH_BRIDGE_FUZZ_CASES").ok().and_then(|s| s.parse().ok()).unwrap_or(1000)
}

fn no_pgp<'a>(_: Box<dyn Read + Send + 'a>) -> Result<Box<dyn Read + Send + 'a>, WrapError> {
    Err(WrapError::PgpWrongKey { key_ids: vec![], message: "no OpenPGP in these tests".into() })
}

/// A failure the input did not cause is a verdict on the file, never the drop's.
fn assert_verdict(e: &WrapError, what: &str) {
    assert!(
        matches!(e, WrapError::BadArchive(m) if !m.is_empty()) || matches!(e, WrapError::TooLarge { .. }),
        "{what}: {e:?}"
    );
    assert!(e.code().is_some(), "{what}: {e:?}");
}

/// Reads `bytes` through the gzip layers: the content, or a verdict.
fn gunzip(bytes: &[u8], layers: &[Layer], limit: u64) -> Result<Vec<u8>, WrapError> {
    let mut r = unwrap_stream(Box::new(Cursor::new(bytes.to_vec())), layers, &no_pgp, limit)?;
    let mut out = Vec::new();
    r.read_to_end(&mut out).map_err(WrapError::from_io)?;
    assert!(out.len() as u64 <= limit, "{} bytes out under a limit of {limit}", out.len());
    Ok(out)
}

/// Spools `bytes` as a zip and reads every member: each member's content or verdict.
fn unzip(bytes: &[u8], limit: u64) -> Result<Vec<Result<Vec<u8>, WrapError>>, WrapError> {
    let mut z = ZipMembers::spool(Cursor::new(bytes.to_vec()), limit)?;
    let infos = z.members().to_vec();
    let mut got = Vec::new();
    for m in &infos {
        assert!(!m.display.is_empty() && m.display.len() <= 200, "{m:?}");
        assert!(
            !m.display.contains(['/', '\\', '!']) && !m.display.contains("..") && !m.display.starts_with('.'),
            "{m:?}"
        );
        let r = z.open(m.index).and_then(|mut r| {
            let mut out = Vec::new();
            r.read_to_end(&mut out).map_err(WrapError::from_io)?;
            Ok(out)
        });
        if let Err(e) = &r {
            assert_verdict(e, "member");
        }
        assert!(z.used() <= limit);
        got.push(r);
    }
    Ok(got)
}

fn gz(data: &[u8]) -> Vec<u8> {
    let mut e = GzEncoder::new(Vec::new(), Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn zip_of(members: &[Vec<u8>]) -> Vec<u8> {
    let mut w = ZipWriter::new(Cursor::new(Vec::new()));
    for (i, data) in members.iter().enumerate() {
        let method = if i % 2 == 0 { CompressionMethod::Deflated } else { CompressionMethod::Stored };
        w.start_file(format!("m{i}.csv"), SimpleFileOptions::default().compression_method(method)).unwrap();
        w.write_all(data).unwrap();
    }
    w.finish().unwrap().into_inner()
}

/// CSV-like content: compressible, with some variety (no regex strategy: those are slow to
/// draw at the CI's case count).
fn content() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec((0u16..3000, 0u16..500, any::<bool>()), 0..60).prop_map(|rows| {
        let mut out = String::new();
        for (sku, qty, odd) in rows {
            out.push_str(&format!("SKU-{sku},{qty}\n"));
            if odd {
                out.push_str("\"quoted, \u{e9}\",\r\n");
            }
        }
        out.into_bytes()
    })
}

/// Distinct members (a tag in each), so a member read through a damaged directory can be told.
fn members() -> impl Strategy<Value = Vec<Vec<u8>>> {
    prop::collection::vec(content(), 1..4).prop_map(|ms| {
        ms.into_iter()
            .enumerate()
            .map(|(i, mut m)| {
                m.extend_from_slice(format!("member-{i}\n").as_bytes());
                m
            })
            .collect()
    })
}

/// `bytes` with some bytes replaced, inserted or removed, or cut short.
fn mutate(mut b: Vec<u8>, edits: &[(prop::sample::Index, u8, u8)]) -> Vec<u8> {
    for (at, how, byte) in edits {
        if b.is_empty() {
            break;
        }
        let i = at.index(b.len());
        match how % 4 {
            0 => b[i] = *byte,
            1 => b.insert(i, *byte),
            2 => {
                b.remove(i);
            }
            _ => b.truncate(i),
        }
    }
    b
}

fn edits() -> impl Strategy<Value = Vec<(prop::sample::Index, u8, u8)>> {
    prop::collection::vec((any::<prop::sample::Index>(), any::<u8>(), any::<u8>()), 1..6)
}

fn limits() -> impl Strategy<Value = u64> {
    prop::sample::select(vec![0u64, 1, 100, 4096, 1 << 20])
}

/// Gives `data` up to `ok` bytes, then fails as a lost connection does.
struct FailsAt {
    data: Cursor<Vec<u8>>,
    ok: u64,
}
impl Read for FailsAt {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.ok.saturating_sub(self.data.position());
        if left == 0 && (self.data.position() as usize) < self.data.get_ref().len() {
            return Err(io::Error::new(io::ErrorKind::ConnectionReset, "the drop went away"));
        }
        let n = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX)).min(13);
        self.data.read(&mut buf[..n])
    }
}

fn is_lost_connection(e: &WrapError) -> bool {
    matches!(e, WrapError::Drop(d) if d.kind() == io::ErrorKind::ConnectionReset)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..600), limit in limits()) {
        for layers in [&[Layer::Gzip][..], &[Layer::Gzip, Layer::Gzip]] {
            if let Err(e) = gunzip(&bytes, layers, limit) {
                assert_verdict(&e, "gzip");
            }
        }
        if let Err(e) = unzip(&bytes, limit) {
            assert_verdict(&e, "zip");
        }
        // A gzip magic in front, so the decoder gets past the first check.
        let mut framed = vec![0x1f, 0x8b, 8, 0];
        framed.extend_from_slice(&bytes);
        if let Err(e) = gunzip(&framed, &[Layer::Gzip], limit) {
            assert_verdict(&e, "framed gzip");
        }
        let mut zipped = b"PK\x03\x04".to_vec();
        zipped.extend_from_slice(&bytes);
        zipped.extend_from_slice(b"PK\x05\x06");
        if let Err(e) = unzip(&zipped, limit) {
            assert_verdict(&e, "framed zip");
        }
    }

    #[test]
    fn mutated_gzip_gives_the_content_or_a_verdict(data in content(), edits in edits(), limit in limits()) {
        let damaged = mutate(gz(&data), &edits);
        match gunzip(&damaged, &[Layer::Gzip], limit) {
            Ok(out) => prop_assert_eq!(&out, &data),
            Err(e) => assert_verdict(&e, "gzip"),
        }
        // Inside another gzip: the outer layer is fine, the inner one damaged.
        match gunzip(&gz(&damaged), &[Layer::Gzip, Layer::Gzip], limit) {
            Ok(out) => prop_assert_eq!(&out, &data),
            Err(e) => assert_verdict(&e, "inner gzip"),
        }
    }

    #[test]
    fn mutated_zip_gives_members_or_verdicts(ms in members(), edits in edits(), limit in limits()) {
        let damaged = mutate(zip_of(&ms), &edits);
        match unzip(&damaged, limit) {
            Ok(got) => {
                for out in got.into_iter().flatten() {
                    prop_assert!(ms.contains(&out), "a member read out of a damaged zip is one put in");
                }
            }
            Err(e) => assert_verdict(&e, "zip"),
        }
    }

    #[test]
    fn a_drop_failure_anywhere_is_the_drops(data in content(), at in any::<prop::sample::Index>()) {
        let g = gz(&data);
        let ok = at.index(g.len()) as u64;
        let input = FailsAt { data: Cursor::new(g), ok };
        let mut r = unwrap_stream(Box::new(input), &[Layer::Gzip], &no_pgp, 1 << 20).unwrap();
        let e = r.read_to_end(&mut Vec::new()).map_err(WrapError::from_io).unwrap_err();
        prop_assert!(is_lost_connection(&e), "gzip failing at {}: {:?}", ok, e);

        // Spooling reads the whole archive before parsing it: any bytes will do.
        let z = data.clone();
        if z.is_empty() {
            return Ok(());
        }
        let ok = at.index(z.len()) as u64;
        let e = ZipMembers::spool(FailsAt { data: Cursor::new(z), ok }, 1 << 20).unwrap_err();
        prop_assert!(is_lost_connection(&e), "zip failing at {}: {:?}", ok, e);
    }
}
