//! Property tests: no input makes the X12 reader panic, whatever it reports is located, framing
//! on a thread of its own (`read_piped`, `validate`'s path) yields exactly what framing in line
//! yields, and the tokenizer gives back exactly the segments (and ordinals) a valid stream was
//! built from.

use proptest::prelude::*;
use std::io::Read;

use stitch_bridge::formats::{FileRejection, LateDuplicate, RecordError};
use stitch_bridge::x12::inbound::{read, read_piped, Event, X12Options, X12Units};
use stitch_bridge::x12::read::{Segment, Segments, Tokenizer};

/// `STITCH_BRIDGE_FUZZ_CASES` scales the run (default 1000 per property).
fn cases() -> u32 {
    std::env::var("STITCH_BRIDGE_FUZZ_CASES").ok().and_then(|s| s.parse().ok()).unwrap_or(1000)
}

const GOOD: &[&str] = &[
    "846_good.x12",
    "846_broken.x12",
    "947_good.x12",
    "944_broken.x12",
    "945_good.x12",
    "945_broken.x12",
    "850_good.x12",
    "850_broken.x12",
    "997_good.x12",
];

fn sample(name: &str) -> Vec<u8> {
    std::fs::read(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("samples/x12").join(name)).unwrap()
}

/// Reads to the end, checking invariants on everything reported.
fn exercise(input: &[u8], opts: &X12Options) {
    let units = match read(input, opts) {
        Ok(u) => u,
        Err(rej) => {
            assert!(rej.line.is_none_or(|l| l >= 1), "{rej:?}");
            return;
        }
    };
    let mut last_line = 1;
    let mut units = units;
    let mut ended = false;
    for item in units.by_ref() {
        assert!(!ended, "nothing after a rejection");
        match item {
            Ok(Event::Unit { unit, .. }) => {
                assert!(!unit.rows.is_empty());
                assert!(unit.rows.windows(2).all(|w| w[0].line < w[1].line));
                assert!(unit.rows[0].line > last_line, "units come in file order");
                if let Err(errors) = &unit.result {
                    assert!(!errors.is_empty() && errors.iter().all(|e| e.line >= 1 && !e.message.is_empty()));
                }
            }
            Ok(Event::SetEnd { result, first_line, last_line: l, errors, .. }) => {
                assert!(first_line <= l, "{first_line} {l}");
                assert_eq!(errors.is_empty(), result.set_code.is_none());
                last_line = last_line.max(l);
            }
            Ok(Event::GroupEnd(_)) | Ok(Event::Ack(_)) => {}
            Err(rej) => {
                assert!(rej.line.is_none_or(|l| l >= 1), "{rej:?}");
                ended = true;
            }
        }
    }
    assert!(units.next().is_none(), "iteration stays finished");
    same_when_piped(input, opts, 1 << 20);
    same_when_piped(input, opts, 3);
}

/// Reads of at most `.2` bytes, from a buffer of its own (a framing thread needs `'static`).
struct Chunks(Vec<u8>, usize, usize);

impl Read for Chunks {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let rest = self.0.get(self.1..).unwrap_or_default();
        let n = rest.len().min(buf.len()).min(self.2);
        buf[..n].copy_from_slice(&rest[..n]);
        self.1 += n;
        Ok(n)
    }
}

/// Everything a read yields: each item with the `group_errors` after it and, with `check_only`,
/// the units counted by then; then the candidate repeats of `finish`.
type Trace = (Vec<(Result<Event, FileRejection>, Vec<RecordError>, u64)>, Vec<LateDuplicate>);

fn trace<R: Read>(units: Result<X12Units<R>, FileRejection>, check_only: bool) -> Result<Trace, FileRejection> {
    let mut units = units?;
    if check_only {
        units = units.check_only(2);
    }
    let mut items = Vec::new();
    while let Some(item) = units.next() {
        let errs = if matches!(item, Ok(Event::GroupEnd(_))) { units.group_errors().to_vec() } else { Vec::new() };
        items.push((item, errs, units.take_accepted()));
    }
    assert!(units.next().is_none(), "iteration stays finished");
    Ok((items, units.finish().unwrap()))
}

/// The same input, read in reads of at most `chunk` bytes in line and piped, gives the same
/// items, plain and with `check_only`.
fn same_when_piped(input: &[u8], opts: &X12Options, chunk: usize) {
    for check_only in [false, true] {
        let here = trace(read(Chunks(input.to_vec(), 0, chunk), opts), check_only);
        let piped = trace(read_piped(Chunks(input.to_vec(), 0, chunk), opts), check_only);
        assert_eq!(here, piped, "piped reading differs (reads of {chunk} bytes, check_only {check_only})");
    }
}

fn odd_options() -> impl Strategy<Value = X12Options> {
    (
        prop::sample::select(vec![0u64, 1, 200, 10_000, u64::MAX]),
        prop::sample::select(vec![0usize, 1, 8, 4096]),
        prop::sample::select(vec![0u64, 1, 3, u64::MAX]),
        prop::sample::select(vec![0usize, 1, 2, 1000]),
        prop::sample::select(vec![0usize, 16, 1024]),
        prop::sample::select(vec!["UTC", "America/New_York", "Pacific/Chatham"]),
    )
        .prop_map(|(max_file_bytes, max_field_len, max_rows, per_group, seg_len, tz)| X12Options {
            timezone: tz.parse().unwrap(),
            max_file_bytes,
            max_field_len,
            max_rows,
            max_rows_per_group: per_group,
            max_segment_len: seg_len,
        })
}

/// A sample with some bytes replaced, inserted or removed.
fn mutated() -> impl Strategy<Value = Vec<u8>> {
    (
        prop::sample::select(GOOD.to_vec()),
        prop::collection::vec((any::<prop::sample::Index>(), 0u8..3, any::<u8>()), 1..8),
    )
        .prop_map(|(name, edits)| {
            let mut b = sample(name);
            for (at, how, byte) in edits {
                if b.is_empty() {
                    break;
                }
                let i = at.index(b.len());
                let byte = [b'*', b'~', b'>', b'\n', b'0', b'A', byte][usize::from(byte) % 7];
                match how {
                    0 => b[i] = byte,
                    1 => b.insert(i, byte),
                    _ => {
                        b.remove(i);
                    }
                }
            }
            b
        })
}

/// Segment streams: ids and elements without separators.
fn segments() -> impl Strategy<Value = Vec<Vec<String>>> {
    let element = "[A-Za-z0-9 .,-]{0,6}";
    let seg = ("[A-Z][A-Z0-9]{1,2}", prop::collection::vec(element, 0..6)).prop_map(|(id, els)| {
        let mut v = vec![id];
        v.extend(els);
        v
    });
    prop::collection::vec(seg, 0..30)
}

const ISA: &str =
    "ISA|00|          |00|          |ZZ|WAREHOUSE      |ZZ|STITCHBRIDGE   |240315|1200|^|00501|000000001|0|T|:";

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..400), opts in odd_options()) {
        exercise(&bytes, &opts);
        let mut isa_first = ISA.as_bytes().to_vec();
        isa_first.push(b'~');
        isa_first.extend_from_slice(&bytes);
        exercise(&isa_first, &opts);
    }

    #[test]
    fn mutated_interchanges_never_panic(bytes in mutated(), opts in odd_options()) {
        exercise(&bytes, &X12Options::default());
        exercise(&bytes, &opts);
    }

    #[test]
    fn tokenizer_round_trips(
        segs in segments(),
        term in prop::sample::select(vec!["~", "~\n", "~\r\n", "\n"]),
        chunk in 1usize..40,
    ) {
        let mut text = format!("{ISA}{}", if term == "\n" { "\n" } else { term });
        for s in &segs {
            text.push_str(&s.join("|"));
            text.push_str(term);
        }
        let (mut tok, isa) = Tokenizer::open(text.as_bytes(), 4096, u64::MAX).unwrap();
        prop_assert_eq!(isa.ordinal, 1);
        prop_assert_eq!(isa.elements.len(), 17);
        let mut got = Vec::new();
        let mut seg = Segment::default();
        while tok.next_into(&mut seg).unwrap() {
            got.push((seg.ordinal, seg.elements.iter().map(String::from).collect::<Vec<_>>()));
        }
        // Blanks at a segment's start are skipped between segments; elements keep theirs.
        let want: Vec<(u64, Vec<String>)> = segs.iter().enumerate().map(|(i, s)| (i as u64 + 2, s.clone())).collect();
        prop_assert_eq!(&got, &want);
        // The same on a framing thread, in reads of a few bytes.
        let (tok, _) = Tokenizer::open(Chunks(text.into_bytes(), 0, chunk), 4096, u64::MAX).unwrap();
        let mut piped = Segments::piped(tok).unwrap();
        let mut got = Vec::new();
        while piped.next_into(&mut seg).unwrap() {
            got.push((seg.ordinal, seg.elements.iter().map(String::from).collect::<Vec<_>>()));
        }
        prop_assert_eq!(got, want);
        prop_assert!(!piped.next_into(&mut seg).unwrap(), "the end stays the end");
    }
}
