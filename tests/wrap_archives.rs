//! Wrapped inbound files through the stream chain and the zip layer: content comes out intact,
//! damage is `BadArchive`, a drop failure under any layer stays the drop's, and gzip and zip
//! bombs are refused early (`TooLarge`) in bounded memory.
//!
//! The OpenPGP layer is a callback here (its own tests are beside `wrap::pgp`): a byte-wise XOR
//! stands in for decryption, so the order and limits of the layers around it can be checked.

use flate2::write::GzEncoder;
use flate2::Compression;
use std::io::{self, Cursor, Read, Seek, SeekFrom, Write};
use stitch_bridge::wrap::archive::{ZipMembers, MAX_ENTRIES};
use stitch_bridge::wrap::{peel, unwrap_stream, Layer, WrapError};
use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, ZipWriter};

const MIB: u64 = 1024 * 1024;
const GIB: u64 = 1024 * MIB;
/// The limit the bomb tests run at.
const LIMIT: u64 = 10 * MIB;

const CSV: &[u8] = b"sku,qty\nA-1,5\nB-2,7\n";

fn gz(data: &[u8]) -> Vec<u8> {
    let mut e = GzEncoder::new(Vec::new(), Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn xor(data: &[u8]) -> Vec<u8> {
    data.iter().map(|b| b ^ 0x5a).collect()
}

/// The stand-in OpenPGP layer: XOR each byte, errors passed through as a decryptor passes its
/// input's.
struct Xor<'a>(Box<dyn Read + Send + 'a>);
impl Read for Xor<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.0.read(buf)?;
        buf[..n].iter_mut().for_each(|b| *b ^= 0x5a);
        Ok(n)
    }
}

fn xor_pgp<'a>(r: Box<dyn Read + Send + 'a>) -> Result<Box<dyn Read + Send + 'a>, WrapError> {
    Ok(Box::new(Xor(r)))
}

fn no_pgp<'a>(_: Box<dyn Read + Send + 'a>) -> Result<Box<dyn Read + Send + 'a>, WrapError> {
    panic!("no OpenPGP layer expected")
}

fn read_all(r: &mut dyn Read) -> Result<Vec<u8>, WrapError> {
    let mut out = Vec::new();
    r.read_to_end(&mut out).map_err(WrapError::from_io)?;
    Ok(out)
}

/// Runs `bytes`, named `name`, through the chain.
fn unwrap_named(name: &str, bytes: Vec<u8>, limit: u64) -> Result<Vec<u8>, WrapError> {
    let p = peel(name);
    let mut r = unwrap_stream(Box::new(Cursor::new(bytes)), &p.layers, &xor_pgp, limit)?;
    read_all(&mut r)
}

#[test]
fn layers_come_off_in_the_order_the_name_gives() {
    assert_eq!(unwrap_named("stock.csv", CSV.to_vec(), 100).unwrap(), CSV);
    assert_eq!(unwrap_named("stock.csv.gz", gz(CSV), 100).unwrap(), CSV);
    assert_eq!(unwrap_named("stock.csv.gz.gz", gz(&gz(CSV)), 100).unwrap(), CSV);
    // gzipped, then encrypted: decrypt first.
    assert_eq!(unwrap_named("stock.csv.gz.pgp", xor(&gz(CSV)), 100).unwrap(), CSV);
    // encrypted, then gzipped: gunzip first.
    assert_eq!(unwrap_named("stock.csv.PGP.GZ", gz(&xor(CSV)), 100).unwrap(), CSV);
    // The wrong order is damage, not a panic or garbage.
    assert!(matches!(unwrap_named("stock.csv.pgp.gz", xor(&gz(CSV)), 100), Err(WrapError::BadArchive(_))));
}

#[test]
fn the_limit_bounds_every_layer() {
    let big = b"x".repeat(5000);
    // The decompressed content, not the compressed file, is measured.
    assert_eq!(unwrap_named("a.csv.gz", gz(&big), 5000).unwrap().len(), 5000);
    let e = unwrap_named("a.csv.gz", gz(&big), 4999).unwrap_err();
    assert!(matches!(e, WrapError::TooLarge { limit: 4999 }), "{e:?}");
    // The outer gzip's output (the inner gzip, 20-odd bytes) fits; the inner's does not.
    let e = unwrap_named("a.csv.gz.gz", gz(&gz(&big)), 4999).unwrap_err();
    assert!(matches!(e, WrapError::TooLarge { .. }), "{e:?}");
    // What the OpenPGP layer gives (its own compression may be a bomb) is bounded too.
    let endless = |_: Box<dyn Read + Send>| -> Result<Box<dyn Read + Send>, WrapError> { Ok(Box::new(io::repeat(0))) };
    let mut r = unwrap_stream(Box::new(&b""[..]), &[Layer::Pgp], &endless, 1000).unwrap();
    assert!(matches!(read_all(&mut r), Err(WrapError::TooLarge { limit: 1000 })));
}

/// Gives `ok` bytes of `data`, then fails as a lost connection does.
struct FailsAfter {
    data: Vec<u8>,
    at: usize,
    ok: usize,
}
impl Read for FailsAfter {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.at >= self.ok {
            return Err(io::Error::new(io::ErrorKind::ConnectionReset, "the drop went away"));
        }
        let n = buf.len().min(self.ok - self.at).min(7);
        buf[..n].copy_from_slice(&self.data[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

fn is_lost_connection(e: &WrapError) -> bool {
    matches!(e, WrapError::Drop(d) if d.kind() == io::ErrorKind::ConnectionReset && d.to_string().contains("went away"))
}

#[test]
fn a_drop_failure_under_the_layers_stays_the_drops() {
    let body = (0..2000).map(|i| format!("SKU-{i},{i}\n")).collect::<String>();
    for (name, bytes) in [
        ("s.csv.gz", gz(body.as_bytes())),
        ("s.csv.gz.gz", gz(&gz(body.as_bytes()))),
        ("s.csv.gz.pgp", xor(&gz(body.as_bytes()))),
        ("s.csv.pgp.gz", gz(&xor(body.as_bytes()))),
    ] {
        for ok in [0, 1, 10, bytes.len() / 2, bytes.len() - 1] {
            let input = FailsAfter { data: bytes.clone(), at: 0, ok };
            let mut r = unwrap_stream(Box::new(input), &peel(name).layers, &xor_pgp, MIB).unwrap();
            let e = read_all(&mut r).unwrap_err();
            assert!(is_lost_connection(&e), "{name} failing after {ok} bytes: {e:?}");
        }
    }
    // Spooling a zip: the same.
    let zip = zip_of(&[("a.csv", CSV, CompressionMethod::Deflated)]);
    let input = FailsAfter { ok: zip.len() / 2, data: zip, at: 0 };
    let e = ZipMembers::spool(input, MIB).unwrap_err();
    assert!(is_lost_connection(&e), "{e:?}");
}

#[test]
fn an_openpgp_failure_under_gzip_stays_openpgp() {
    let body = gz(&b"x,1\n".repeat(1000));
    let half = body[..body.len() / 2].to_vec();
    let failing = move |_: Box<dyn Read + Send>| -> Result<Box<dyn Read + Send>, WrapError> {
        let corrupt = WrapError::PgpCorrupt("the integrity check failed".into()).into_io();
        Ok(Box::new(Cursor::new(half.clone()).chain(ErrAfter(Some(corrupt)))))
    };
    let mut r = unwrap_stream(Box::new(&b""[..]), &[Layer::Pgp, Layer::Gzip], &failing, MIB).unwrap();
    let e = read_all(&mut r).unwrap_err();
    assert!(matches!(&e, WrapError::PgpCorrupt(m) if m.contains("integrity")), "{e:?}");
}

struct ErrAfter(Option<io::Error>);
impl Read for ErrAfter {
    fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
        Err(self.0.take().unwrap_or_else(|| io::Error::other("again")))
    }
}

fn zip_of(members: &[(&str, &[u8], CompressionMethod)]) -> Vec<u8> {
    let mut w = ZipWriter::new(Cursor::new(Vec::new()));
    for (name, data, method) in members {
        if name.ends_with('/') {
            w.add_directory(*name, SimpleFileOptions::default()).unwrap();
            continue;
        }
        w.start_file(*name, SimpleFileOptions::default().compression_method(*method)).unwrap();
        w.write_all(data).unwrap();
    }
    w.finish().unwrap().into_inner()
}

fn read_member(z: &mut ZipMembers, index: usize) -> Result<Vec<u8>, WrapError> {
    let mut r = z.open(index)?;
    read_all(&mut r)
}

#[test]
fn zip_members_listed_named_and_read() {
    use CompressionMethod::{Deflated, Stored};
    let orders = b"ISA*00*...~".repeat(20);
    let zip = zip_of(&[
        ("stock.csv", CSV, Deflated),
        ("in/", b"", Stored),
        ("in/ORDERS.EDI", &orders, Stored),
        ("readme.txt", b"hello", Deflated),
        ("../../etc/evil.csv", CSV, Deflated),
        ("__MACOSX/._stock.csv", b"\0\x05\x16\x07", Stored),
        ("a/x.csv", b"a", Deflated),
        ("a_x.csv", b"b", Deflated),
    ]);
    let mut z = ZipMembers::spool(Cursor::new(zip), MIB).unwrap();
    let m = z.members().to_vec();
    let names: Vec<_> = m.iter().map(|m| (m.name.as_str(), m.display.as_str(), m.wanted)).collect();
    assert_eq!(
        names,
        [
            ("stock.csv", "stock.csv", true),
            ("in/ORDERS.EDI", "in_ORDERS.EDI", true),
            ("readme.txt", "readme.txt", false),
            ("../../etc/evil.csv", "etc_evil.csv", true),
            ("__MACOSX/._stock.csv", "__MACOSX_._stock.csv", false),
            ("a/x.csv", "a_x.csv", true),
            ("a_x.csv", "a_x-2.csv", true),
        ]
    );
    assert!(m.iter().all(|m| m.unreadable.is_none()));
    assert_eq!(m[0].size, CSV.len() as u64);
    assert_eq!(read_member(&mut z, m[0].index).unwrap(), CSV);
    assert_eq!(read_member(&mut z, m[1].index).unwrap(), orders);
    // Any order, and again.
    assert_eq!(read_member(&mut z, m[6].index).unwrap(), b"b");
    assert_eq!(read_member(&mut z, m[0].index).unwrap(), CSV);
    assert_eq!(z.used(), (2 * CSV.len() + orders.len() + 1) as u64);
    // The directory is not a member.
    let dir = 1;
    assert!(m.iter().all(|m| m.index != dir));
    assert!(matches!(z.open(dir), Err(WrapError::BadArchive(_))));
}

#[test]
fn a_zip_inside_gzip_and_openpgp() {
    let zip = zip_of(&[("stock.csv", CSV, CompressionMethod::Deflated)]);
    let p = peel("daily.zip.gz.pgp");
    assert!(p.zip);
    let r = unwrap_stream(Box::new(Cursor::new(xor(&gz(&zip)))), &p.layers, &xor_pgp, MIB).unwrap();
    let mut z = ZipMembers::spool(r, MIB).unwrap();
    let index = z.members()[0].index;
    assert_eq!(read_member(&mut z, index).unwrap(), CSV);
    // The spooled archive itself is held to the limit.
    let e = ZipMembers::spool(Cursor::new(zip.clone()), zip.len() as u64 - 1).unwrap_err();
    assert!(matches!(e, WrapError::TooLarge { .. }), "{e:?}");
}

#[test]
fn damaged_zips_are_bad_archives() {
    let zip = zip_of(&[("stock.csv", &CSV.repeat(40), CompressionMethod::Deflated)]);
    let mut no_directory = zip.clone();
    no_directory.truncate(zip.len() - 30);
    for (what, bytes) in [
        ("empty", Vec::new()),
        ("not a zip", CSV.to_vec()),
        ("no central directory", no_directory),
        ("cut in the data", zip[..40].to_vec()),
    ] {
        let e = ZipMembers::spool(Cursor::new(bytes), MIB).unwrap_err();
        assert!(matches!(e, WrapError::BadArchive(_)), "{what}: {e:?}");
    }

    // Damage inside a member's data shows when it is read.
    let data_at = 30 + "stock.csv".len() + 5;
    let mut flipped = zip.clone();
    flipped[data_at] ^= 0xff;
    let mut z = ZipMembers::spool(Cursor::new(flipped), MIB).unwrap();
    let e = read_member(&mut z, 0).unwrap_err();
    assert!(matches!(&e, WrapError::BadArchive(m) if m.contains("stock.csv")), "{e:?}");
}

/// Sets `field` (a little-endian u16 at `local_at` in local headers, `central_at` in central
/// ones) of every entry.
fn patch_headers(zip: &mut [u8], local_at: usize, central_at: usize, set: impl Fn(u16) -> u16) {
    for (sig, at) in [(b"PK\x03\x04", local_at), (b"PK\x01\x02", central_at)] {
        let starts: Vec<_> = zip.windows(4).enumerate().filter(|(_, w)| w == sig).map(|(i, _)| i).collect();
        for s in starts {
            let v = u16::from_le_bytes([zip[s + at], zip[s + at + 1]]);
            zip[s + at..s + at + 2].copy_from_slice(&set(v).to_le_bytes());
        }
    }
}

#[test]
fn encrypted_and_unsupported_members_are_unreadable_the_rest_goes_on() {
    use CompressionMethod::Deflated;
    let one = |name: &str| zip_of(&[(name, CSV, Deflated)]);

    // The encryption flag (bit 0 of the general purpose flags).
    let mut encrypted = one("locked.csv");
    patch_headers(&mut encrypted, 6, 8, |f| f | 1);
    // Compression method 12 (bzip2), not built in.
    let mut bzip2 = one("b.csv");
    patch_headers(&mut bzip2, 8, 10, |_| 12);

    for (what, bytes, why) in [("encrypted", encrypted, "encrypted"), ("bzip2", bzip2, "only stored and deflate")] {
        let mut z = ZipMembers::spool(Cursor::new(bytes), MIB).unwrap();
        let m = z.members()[0].clone();
        assert!(m.wanted, "{what}");
        assert!(m.unreadable.as_deref().is_some_and(|u| u.contains(why)), "{what}: {:?}", m.unreadable);
        let e = read_member(&mut z, m.index).unwrap_err();
        assert!(matches!(&e, WrapError::BadArchive(msg) if msg.contains(why)), "{what}: {e:?}");
    }
}

#[test]
fn too_many_entries_refused_whole() {
    let names: Vec<String> = (0..=MAX_ENTRIES).map(|i| format!("{i}.txt")).collect();
    let members: Vec<_> = names.iter().map(|n| (n.as_str(), &b""[..], CompressionMethod::Stored)).collect();
    let zip = zip_of(&members);
    let e = ZipMembers::spool(Cursor::new(zip), 64 * MIB).unwrap_err();
    assert!(matches!(&e, WrapError::BadArchive(m) if m.contains("entries")), "{e:?}");
    let zip = zip_of(&members[..MAX_ENTRIES]);
    assert_eq!(ZipMembers::spool(Cursor::new(zip), 64 * MIB).unwrap().members().len(), MAX_ENTRIES);
}

#[test]
fn the_limit_is_shared_by_an_archives_members() {
    let six = vec![b'7'; 6 * 1024];
    let zip = zip_of(&[("a.csv", &six, CompressionMethod::Deflated), ("b.csv", &six, CompressionMethod::Deflated)]);
    let mut z = ZipMembers::spool(Cursor::new(zip), 10 * 1024).unwrap();
    assert_eq!(read_member(&mut z, 0).unwrap(), six);
    // b's declared size does not fit what is left: refused before anything is inflated.
    assert!(matches!(z.open(1), Err(WrapError::TooLarge { limit: 10240 })));
    assert_eq!(z.used(), six.len() as u64);
}

// ---- bombs ----------------------------------------------------------------------------------

/// A raw deflate stream of `total` zero bytes, made as it is read (a fixed-Huffman block: one
/// literal zero, then matches of 258 at distance 1, then literal zeros): about 1:160, so the
/// test holds neither the inflated nor the compressed bomb in memory.
struct ZeroDeflate {
    bits: u64,
    nbits: u32,
    matches: u64,
    literals: u64,
    started: bool,
    ended: bool,
}

impl ZeroDeflate {
    fn new(total: u64) -> Self {
        assert!(total >= 1);
        ZeroDeflate {
            bits: 0,
            nbits: 0,
            matches: (total - 1) / 258,
            literals: (total - 1) % 258,
            started: false,
            ended: false,
        }
    }
    /// LSB first, as deflate's header bits are.
    fn put_bits(&mut self, v: u64, n: u32) {
        self.bits |= v << self.nbits;
        self.nbits += n;
    }
    /// Huffman codes go MSB first.
    fn put_code(&mut self, code: u64, n: u32) {
        for i in (0..n).rev() {
            self.put_bits((code >> i) & 1, 1);
        }
    }
    /// The next symbol's bits; false once all are out.
    fn next_symbol(&mut self) -> bool {
        const LIT0: (u64, u32) = (0x30, 8);
        if !self.started {
            self.started = true;
            self.put_bits(1, 1); // BFINAL
            self.put_bits(1, 2); // BTYPE = fixed Huffman
            self.put_code(LIT0.0, LIT0.1);
        } else if self.matches > 0 {
            self.matches -= 1;
            self.put_code(0xC5, 8); // length 258 (code 285)
            self.put_code(0, 5); // distance 1
        } else if self.literals > 0 {
            self.literals -= 1;
            self.put_code(LIT0.0, LIT0.1);
        } else if !self.ended {
            self.ended = true;
            self.put_code(0, 7); // end of block
        } else {
            return false;
        }
        true
    }
}

impl Read for ZeroDeflate {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut n = 0;
        while n < buf.len() {
            if self.nbits >= 8 {
                buf[n] = self.bits as u8;
                self.bits >>= 8;
                self.nbits -= 8;
                n += 1;
            } else if !self.next_symbol() {
                if self.nbits == 0 {
                    break;
                }
                self.nbits = 8; // pad the last byte with zero bits
            }
        }
        Ok(n)
    }
}

/// CRC-32 of `2^k` zero bytes (k >= 16), by doubling rather than by hashing a gibibyte.
fn crc_of_zeros(total: u64) -> u32 {
    assert!(total.is_power_of_two() && total >= 1 << 16);
    let mut c = flate2::Crc::new();
    c.update(&[0u8; 1 << 16]);
    let mut size = 1u64 << 16;
    while size < total {
        let mut d = flate2::Crc::new();
        d.combine(&c);
        d.combine(&c);
        c = d;
        size *= 2;
    }
    c.sum()
}

/// Counts what is read through it.
struct Counted<R> {
    inner: R,
    count: std::sync::Arc<std::sync::atomic::AtomicU64>,
}
impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count.fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
        Ok(n)
    }
}

/// A valid gzip of `total` zeros, made as it is read.
fn gzip_bomb(total: u64) -> impl Read {
    let header = Cursor::new(vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff]);
    let mut trailer = crc_of_zeros(total).to_le_bytes().to_vec();
    trailer.extend_from_slice(&(total as u32).to_le_bytes());
    header.chain(ZeroDeflate::new(total)).chain(Cursor::new(trailer))
}

#[test]
fn the_bomb_generators_are_valid_streams() {
    let total = 1 << 20;
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(gzip_bomb(total)).read_to_end(&mut out).unwrap();
    assert_eq!(out.len() as u64, total);
    assert!(out.iter().all(|&b| b == 0));
    // One that is not a multiple of the match length.
    let mut out = Vec::new();
    flate2::read::DeflateDecoder::new(ZeroDeflate::new(1000)).read_to_end(&mut out).unwrap();
    assert_eq!(out, vec![0u8; 1000]);
    // And the zip bomb, honest, at a size that fits.
    let (mut f, _) = zip_bomb(total, total, crc_of_zeros(total));
    f.seek(SeekFrom::Start(0)).unwrap();
    let mut z = ZipMembers::spool(f, total).unwrap();
    assert_eq!(z.members()[0].size, total);
    let got = read_member(&mut z, 0).unwrap();
    assert!(got.len() as u64 == total && got.iter().all(|&b| b == 0));
}

/// A zip file with one deflated member `bomb.csv` of `total` zeros that declares
/// `declared_size` and `crc`: written to a temporary file as it is made. Gives the file and its
/// length.
fn zip_bomb(total: u64, declared_size: u64, crc: u32) -> (std::fs::File, u64) {
    let name = b"bomb.csv";
    let declared = u32::try_from(declared_size).unwrap();
    let mut f = tempfile::tempfile().unwrap();
    let header = |sig: &[u8], central: bool, csize: u32| {
        let mut h = sig.to_vec();
        if central {
            h.extend_from_slice(&20u16.to_le_bytes()); // version made by
        }
        h.extend_from_slice(&20u16.to_le_bytes()); // version needed
        h.extend_from_slice(&0u16.to_le_bytes()); // flags
        h.extend_from_slice(&8u16.to_le_bytes()); // deflate
        h.extend_from_slice(&[0, 0, 0x21, 0]); // time, date (1980-01-01)
        h.extend_from_slice(&crc.to_le_bytes());
        h.extend_from_slice(&csize.to_le_bytes());
        h.extend_from_slice(&declared.to_le_bytes());
        h.extend_from_slice(&(name.len() as u16).to_le_bytes());
        h.extend_from_slice(&0u16.to_le_bytes()); // extra length
        if central {
            h.extend_from_slice(&[0; 6]); // comment length, disk, internal attributes
            h.extend_from_slice(&0u32.to_le_bytes()); // external attributes
            h.extend_from_slice(&0u32.to_le_bytes()); // local header offset
        }
        h.extend_from_slice(name);
        h
    };
    f.write_all(&header(b"PK\x03\x04", false, 0)).unwrap();
    let data_start = f.stream_position().unwrap();
    let csize = io::copy(&mut ZeroDeflate::new(total), &mut f).unwrap();
    let csize32 = u32::try_from(csize).unwrap();
    let cd_start = f.stream_position().unwrap();
    let central = header(b"PK\x01\x02", true, csize32);
    f.write_all(&central).unwrap();
    let mut eocd = b"PK\x05\x06".to_vec();
    eocd.extend_from_slice(&[0; 4]); // disk numbers
    eocd.extend_from_slice(&1u16.to_le_bytes());
    eocd.extend_from_slice(&1u16.to_le_bytes());
    eocd.extend_from_slice(&(central.len() as u32).to_le_bytes());
    eocd.extend_from_slice(&(cd_start as u32).to_le_bytes());
    eocd.extend_from_slice(&0u16.to_le_bytes());
    f.write_all(&eocd).unwrap();
    let len = f.stream_position().unwrap();
    // The local header's compressed size, now known.
    f.seek(SeekFrom::Start(data_start - name.len() as u64 - 12)).unwrap();
    f.write_all(&csize32.to_le_bytes()).unwrap();
    (f, len)
}

/// Peak resident memory of this process so far, in bytes.
fn peak_rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap() * 1024
}

/// How much the peak memory may grow while a bomb is refused.
const MEMORY_BOUND: u64 = 64 * MIB;

/// Runs the ignored test `name` alone in a child process (so the peak memory it measures is its
/// own), and checks that it ran and passed.
fn in_child(name: &str) {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--ignored", "--exact", name, "--test-threads=1", "--nocapture"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{name} failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains("1 passed"), "{name} did not run:\n{stdout}");
    for line in stdout.lines().filter_map(|l| l.find("bomb:").map(|at| &l[at..])) {
        eprintln!("{line}");
    }
}

#[test]
fn gzip_bomb_refused_early_in_bounded_memory() {
    in_child("child_gzip_bomb");
}

#[test]
#[ignore = "run by gzip_bomb_refused_early_in_bounded_memory in a process of its own"]
fn child_gzip_bomb() {
    let before = peak_rss();
    let consumed = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let input = Counted { inner: gzip_bomb(GIB), count: consumed.clone() };
    let started = std::time::Instant::now();
    let mut r = unwrap_stream(Box::new(input), &peel("stock.csv.gz").layers, &no_pgp, LIMIT).unwrap();
    let mut sink = [0u8; 64 * 1024];
    let mut out = 0u64;
    let e = loop {
        match r.read(&mut sink) {
            Ok(0) => panic!("a gibibyte came out under a limit of {LIMIT}"),
            Ok(n) => out += n as u64,
            Err(e) => break WrapError::from_io(e),
        }
    };
    let grew = peak_rss().saturating_sub(before);
    println!(
        "bomb: gzip refused after {out} bytes out, {} in, {:?}, peak memory +{grew}",
        consumed.load(std::sync::atomic::Ordering::Relaxed),
        started.elapsed()
    );
    assert!(matches!(e, WrapError::TooLarge { limit: LIMIT }), "{e:?}");
    assert!(out <= LIMIT);
    // Early: about LIMIT/160 of compressed input, plus the decoder's buffer.
    assert!(
        consumed.load(std::sync::atomic::Ordering::Relaxed) < LIMIT / 20,
        "read {} bytes of the bomb",
        consumed.load(std::sync::atomic::Ordering::Relaxed)
    );
    assert!(grew < MEMORY_BOUND, "peak memory grew by {grew}");
}

#[test]
fn zip_bombs_refused_early_in_bounded_memory() {
    in_child("child_zip_bombs");
}

#[test]
#[ignore = "run by zip_bombs_refused_early_in_bounded_memory in a process of its own"]
fn child_zip_bombs() {
    let before = peak_rss();
    let started = std::time::Instant::now();
    let crc = crc_of_zeros(GIB);

    // Honest: it declares its gibibyte, and is refused at open, before anything is inflated.
    let (mut f, len) = zip_bomb(GIB, GIB, crc);
    f.seek(SeekFrom::Start(0)).unwrap();
    let mut z = ZipMembers::spool(f, LIMIT).unwrap();
    assert!(len < LIMIT, "the bomb itself fits the limit: {len}");
    assert_eq!(z.members()[0].size, GIB);
    assert!(matches!(z.open(0), Err(WrapError::TooLarge { limit: LIMIT })));
    assert_eq!(z.used(), 0);

    // Lying: it declares less than it holds (1000 bytes, or just under the limit); the read is
    // held to the declared size, and the archive contradicting itself is a bad archive.
    for declared in [1000, LIMIT - 1] {
        let (mut f, _) = zip_bomb(GIB, declared, crc);
        f.seek(SeekFrom::Start(0)).unwrap();
        let mut z = ZipMembers::spool(f, LIMIT).unwrap();
        // Into a sink: the memory measured is the reader's, not a copy of what it gave.
        let e = io::copy(&mut z.open(0).unwrap(), &mut io::sink()).map_err(WrapError::from_io).unwrap_err();
        assert!(matches!(&e, WrapError::BadArchive(m) if m.contains("declared")), "declared {declared}: {e:?}");
        assert!(z.used() <= declared, "declared {declared}, read {}", z.used());
    }

    // A bomb of an archive: a gzip that inflates to a gibibyte, named `.zip.gz`, is refused
    // while spooling.
    let p = peel("huge.zip.gz");
    let r = unwrap_stream(Box::new(gzip_bomb(GIB)), &p.layers, &no_pgp, LIMIT).unwrap();
    assert!(matches!(ZipMembers::spool(r, LIMIT), Err(WrapError::TooLarge { limit: LIMIT })));

    let grew = peak_rss().saturating_sub(before);
    println!("bomb: zip bombs refused in {:?}, peak memory +{grew}", started.elapsed());
    assert!(grew < MEMORY_BOUND, "peak memory grew by {grew}");
}
