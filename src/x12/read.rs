//! The X12 tokenizer: separators from the ISA, then the segments with their ordinals in the file
//! (ISA = 1), framed a batch at a time (one UTF-8 check for the batch) on the caller's thread or,
//! with `Segments::piped`, on a thread of its own. Streams: memory is bounded by a few batches and
//! the longest segment allowed, never by the file; buffers are reused, so a segment costs no
//! allocation once they are warm.

use crate::formats::{recv_polling, send_polling};
use std::io::Read;
use std::sync::mpsc::{Receiver, SyncSender};

use memchr::{memchr, memchr_iter};

use super::Separators;
use crate::formats::records::Fields;

/// The ISA's fixed length, its segment terminator included.
pub const ISA_LEN: usize = 106;

/// One segment: `elements[0]` is the segment id (`W12`), `elements[n]` is element `n` (`W12-03`
/// is `elements[3]`), untrimmed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Segment {
    /// Position in the file, ISA = 1.
    pub ordinal: u64,
    pub elements: Fields,
}

impl Segment {
    /// The segment id (`""` for an empty segment).
    pub fn id(&self) -> &str {
        self.elements.get(0).unwrap_or("")
    }

    /// Element `n` (1-based), trimmed; `None` when absent or blank.
    pub fn element(&self, n: usize) -> Option<&str> {
        let v = self.elements.get(n)?;
        // Most values start and end with a visible ASCII character: nothing to trim.
        let v = match (v.as_bytes().first(), v.as_bytes().last()) {
            (Some(a), Some(b)) if a.is_ascii_graphic() && b.is_ascii_graphic() => v,
            _ => v.trim(),
        };
        (!v.is_empty()).then_some(v)
    }

    /// Element `n` untrimmed, `""` when absent.
    pub fn raw(&self, n: usize) -> &str {
        self.elements.get(n).unwrap_or("")
    }

    /// Elements after the id.
    pub fn element_count(&self) -> usize {
        self.elements.len().saturating_sub(1)
    }
}

/// Why the tokenizer stopped.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("the file could not be read: {0}")]
    Io(#[from] std::io::Error),
    #[error("the file is larger than the limit of {limit} bytes")]
    TooLarge { limit: u64 },
    #[error("segment {ordinal} is longer than {limit} bytes without a segment terminator")]
    SegmentTooLong { ordinal: u64, limit: usize },
    /// The ISA is missing, truncated or malformed.
    #[error("{0}")]
    Isa(String),
}

/// The separators an ISA declares. `isa` is the interchange's first 106 bytes (the BOM and
/// leading blanks already skipped). Checks only what the tokenizer needs; field widths and
/// values are the envelope's concern.
pub fn separators(isa: &[u8]) -> Result<Separators, ReadError> {
    if !isa.starts_with(b"ISA") {
        return Err(ReadError::Isa("the file does not start with an ISA segment".into()));
    }
    if isa.len() < ISA_LEN {
        return Err(ReadError::Isa(format!(
            "the ISA is truncated: {} bytes, an ISA is {ISA_LEN} characters with its terminator",
            isa.len()
        )));
    }
    let element = isa[3];
    let component = isa[104];
    let segment = isa[105];
    let v501 = isa.get(84..89) == Some(b"00501".as_slice());
    let repetition = v501.then_some(isa[82]);
    let mut all = vec![element, component, segment];
    all.extend(repetition);
    let bad = |b: &u8| b.is_ascii_alphanumeric() || *b == b' ';
    if all.iter().any(bad) {
        return Err(ReadError::Isa(format!(
            "the ISA's separators {} are not usable (letters, digits or spaces; is the ISA 106 characters with fixed-width fields?)",
            all.iter().map(|b| format!("{:?}", char::from(*b))).collect::<Vec<_>>().join(" ")
        )));
    }
    let mut sorted = all.clone();
    sorted.sort_unstable();
    sorted.dedup();
    if sorted.len() != all.len() {
        return Err(ReadError::Isa("the ISA declares the same character for two separators".into()));
    }
    Ok(Separators { element, component, segment, repetition })
}

/// Streams segments out of a reader.
pub struct Tokenizer<R> {
    reader: R,
    buf: Vec<u8>,
    start: usize,
    end: usize,
    eof: bool,
    read_total: u64,
    max_bytes: u64,
    max_segment_len: usize,
    separators: Separators,
    /// Ordinal of the last segment framed.
    framed: u64,
    /// Ordinal of the last segment `next_into` returned.
    ordinal: u64,
    /// Segments framed but not yet returned by `next_into`.
    batch: Batch,
    /// Set once the input ended or failed: every later batch ends the same way.
    stopped: Option<Stop>,
}

/// How a tokenizer stopped, kept so that asking again gives the same answer.
#[derive(Debug, Clone)]
enum Stop {
    End,
    Failed(ReadError),
}

impl Stop {
    fn again(&self) -> Result<bool, ReadError> {
        match self {
            Stop::End => Ok(false),
            Stop::Failed(e) => Err(e.clone()),
        }
    }
}

impl Clone for ReadError {
    /// An I/O error is copied as its kind and message (`io::Error` is not `Clone`).
    fn clone(&self) -> Self {
        match self {
            ReadError::Io(e) => ReadError::Io(std::io::Error::new(e.kind(), e.to_string())),
            ReadError::TooLarge { limit } => ReadError::TooLarge { limit: *limit },
            ReadError::SegmentTooLong { ordinal, limit } => {
                ReadError::SegmentTooLong { ordinal: *ordinal, limit: *limit }
            }
            ReadError::Isa(m) => ReadError::Isa(m.clone()),
        }
    }
}

const CHUNK: usize = 64 * 1024;

/// A batch takes at most this many segments, or segments past this many bytes, whichever comes
/// first: with the batches in flight, memory stays bounded by a few of them (and by the longest
/// segment allowed) however the file is cut.
const BATCH_SEGMENTS: usize = 4096;
const BATCH_BYTES: usize = 64 * 1024;

/// Segments framed together out of one read buffer, handed out one at a time by swapping
/// buffers with the caller (no copy, no allocation once the buffers are warm).
#[derive(Debug, Default)]
struct Batch {
    segs: Vec<Segment>,
    /// Segments in use (the rest are spare buffers).
    len: usize,
    /// The next segment to hand out.
    at: usize,
    /// After the last segment: the end of the input, or why reading stopped.
    end: Option<Result<(), ReadError>>,
}

impl Batch {
    /// Swaps the next segment into `seg` (`Some(Ok(true))`); after the last, the end
    /// (`Some(Ok(false))`) or the error, once; `None` when the batch is spent and says no more.
    fn next_into(&mut self, seg: &mut Segment) -> Option<Result<bool, ReadError>> {
        if self.at < self.len {
            // The batch keeps the caller's old buffers for the next fill.
            std::mem::swap(seg, &mut self.segs[self.at]);
            self.at += 1;
            return Some(Ok(true));
        }
        self.end.take().map(|r| r.map(|()| false))
    }

    fn clear(&mut self) {
        self.len = 0;
        self.at = 0;
        self.end = None;
    }

    /// The next segment buffer to fill (the caller overwrites all of it).
    fn slot(&mut self) -> &mut Segment {
        if self.len == self.segs.len() {
            self.segs.push(Segment::default());
        }
        self.len += 1;
        &mut self.segs[self.len - 1]
    }
}

impl<R: Read> Tokenizer<R> {
    /// Reads the ISA (after an optional BOM and blank lines) and returns the tokenizer and the
    /// ISA as segment 1.
    pub fn open(reader: R, max_segment_len: usize, max_bytes: u64) -> Result<(Self, Segment), ReadError> {
        let mut t = Tokenizer {
            reader,
            buf: vec![0; CHUNK.max(ISA_LEN * 2)],
            start: 0,
            end: 0,
            eof: false,
            read_total: 0,
            max_bytes,
            max_segment_len: max_segment_len.max(ISA_LEN),
            separators: Separators { element: b'*', component: b'>', segment: b'~', repetition: None },
            framed: 0,
            ordinal: 0,
            batch: Batch::default(),
            stopped: None,
        };
        // Enough bytes for BOM, blanks and the ISA, however the reader cuts its reads.
        loop {
            let lead = t.lead();
            if (t.end - t.start).saturating_sub(lead) >= ISA_LEN || t.eof {
                break;
            }
            if t.end == t.buf.len() {
                // Blanks and the BOM cannot matter: drop them to make room.
                t.start += lead;
                t.compact();
            }
            t.fill()?;
        }
        t.start += t.lead();
        let isa = &t.buf[t.start..t.end.min(t.start + ISA_LEN)];
        let separators = separators(isa)?;
        t.separators = separators;
        let mut seg = Segment::default();
        t.framed = 1;
        t.ordinal = 1;
        let isa_body = t.start..t.start + ISA_LEN - 1;
        t.start += ISA_LEN;
        split(&t.buf[isa_body], separators.element, 1, &mut seg);
        Ok((t, seg))
    }

    /// Bytes of BOM and blanks at the front of what is buffered.
    fn lead(&self) -> usize {
        let b = &self.buf[self.start..self.end];
        let bom = if b.starts_with(b"\xEF\xBB\xBF") { 3 } else { 0 };
        bom + b[bom..].iter().take_while(|c| c.is_ascii_whitespace()).count()
    }

    pub fn separators(&self) -> Separators {
        self.separators
    }

    /// The ordinal of the last segment `next_into` returned.
    pub fn ordinal(&self) -> u64 {
        self.ordinal
    }

    fn compact(&mut self) {
        self.buf.copy_within(self.start..self.end, 0);
        self.end -= self.start;
        self.start = 0;
    }

    fn fill(&mut self) -> Result<(), ReadError> {
        if self.end == self.buf.len() {
            self.compact();
        }
        if self.end == self.buf.len() {
            let grown = (self.buf.len() * 2).min(self.max_segment_len + 2).max(self.buf.len() + 1);
            self.buf.resize(grown, 0);
        }
        let n = loop {
            match self.reader.read(&mut self.buf[self.end..]) {
                Ok(n) => break n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(ReadError::Io(e)),
            }
        };
        if n == 0 {
            self.eof = true;
        }
        self.end += n;
        self.read_total += n as u64;
        if self.read_total > self.max_bytes {
            return Err(ReadError::TooLarge { limit: self.max_bytes });
        }
        Ok(())
    }

    /// Reads the next segment into `seg` (its buffers are reused). `Ok(false)` at the end of the
    /// input. Line breaks and blanks between segments are skipped; a last segment without a
    /// terminator is returned as it is (the envelope checks tell a cut file). After an error,
    /// every later call gives it again.
    pub fn next_into(&mut self, seg: &mut Segment) -> Result<bool, ReadError> {
        loop {
            if let Some(r) = self.batch.next_into(seg) {
                if matches!(r, Ok(true)) {
                    self.ordinal = seg.ordinal;
                }
                return r;
            }
            let mut batch = std::mem::take(&mut self.batch);
            self.fill_batch(&mut batch);
            self.batch = batch;
        }
    }

    /// Frames into `batch` (its buffers are reused) the complete segments already buffered, up
    /// to a batch's bounds, reading only when there is none: the batch holds at least one
    /// segment or says how the input ended. The same segments and the same reads as framing
    /// one segment at a time, so the same errors at the same places.
    fn fill_batch(&mut self, batch: &mut Batch) {
        batch.clear();
        loop {
            if let Some(stop) = &self.stopped {
                batch.end = Some(match stop {
                    Stop::End => Ok(()),
                    Stop::Failed(e) => Err(e.clone()),
                });
                return;
            }
            let r = self.frame_buffered(batch);
            if batch.len > 0 && r.is_ok() {
                return;
            }
            let stop = match r {
                Ok(()) if self.start == self.end && self.eof => Stop::End,
                Ok(()) => match self.fill() {
                    Ok(()) => continue,
                    Err(e) => Stop::Failed(e),
                },
                Err(e) => Stop::Failed(e),
            };
            self.stopped = Some(stop);
            // Segments framed before an error are handed out first; the error comes after them.
        }
    }

    /// Frames the complete segments in `buf[start..end]` into `batch`, the UTF-8 check once for
    /// all of them. At the end of the input, what is left is the last segment. `Err` (after the
    /// segments before it) for a segment over the limit.
    fn frame_buffered(&mut self, batch: &mut Batch) -> Result<(), ReadError> {
        let Separators { element, segment: term, .. } = self.separators;
        let (eof, max) = (self.eof, self.max_segment_len);
        let avail = &self.buf[self.start..self.end];
        // One check for what this batch can take; a segment inside the valid part needs none of
        // its own (with ASCII separators every segment and element edge is a character
        // boundary), one past it is checked alone.
        let window = &avail[..avail.len().min(BATCH_BYTES)];
        let text = (element.is_ascii() && term.is_ascii()).then(|| match std::str::from_utf8(window) {
            Ok(t) => t,
            Err(e) => std::str::from_utf8(&window[..e.valid_up_to()]).unwrap_or(""),
        });
        let mut at = 0;
        let mut ordinal = self.framed;
        let result = loop {
            // Full: the rest stays buffered for the next batch (no read before it is framed).
            if batch.len > 0 && (batch.len >= BATCH_SEGMENTS || at >= BATCH_BYTES) {
                break Ok(());
            }
            while at < avail.len() && matches!(avail[at], b'\r' | b'\n' | b' ' | b'\t') {
                at += 1;
            }
            if at == avail.len() {
                break Ok(());
            }
            let found = memchr(term, &avail[at..]);
            let len = match found {
                Some(i) => i,
                None if eof => avail.len() - at,
                None if avail.len() - at > max => {
                    break Err(ReadError::SegmentTooLong { ordinal: ordinal + 1, limit: max });
                }
                // An incomplete segment: it waits for the next read.
                None => break Ok(()),
            };
            if len > max {
                break Err(ReadError::SegmentTooLong { ordinal: ordinal + 1, limit: max });
            }
            let mut body_end = at + len;
            if term == b'\n' && avail[at..body_end].ends_with(b"\r") {
                body_end -= 1;
            }
            ordinal += 1;
            let seg = batch.slot();
            match text.and_then(|t| t.get(at..body_end)) {
                Some(body) => split_text(body, element, ordinal, seg),
                None => split(&avail[at..body_end], element, ordinal, seg),
            }
            at += len + usize::from(found.is_some());
        };
        self.start += at;
        self.framed = ordinal;
        result
    }
}

/// Batches filled and not yet taken; with the one being filled and the one being read, memory
/// stays a few read buffers' worth whatever the file size.
const BATCHES_IN_FLIGHT: usize = 2;

/// Where segments come from: a tokenizer on this thread, or one on a thread of its own.
enum Source<R> {
    Here(Tokenizer<R>),
    Piped {
        full: Receiver<Batch>,
        empty: SyncSender<Batch>,
        batch: Batch,
        /// How the input ended, once handed out: every later call gives it again.
        stopped: Option<Stop>,
    },
}

/// The segments after the ISA, framed in line or on a framing thread (`Segments::piped`); the
/// same segments and the same errors, in the same order, either way.
pub struct Segments<R> {
    source: Source<R>,
}

impl<R: Read> Segments<R> {
    /// Framing on the caller's thread (the engine reads borrowed drop streams).
    pub fn here(tok: Tokenizer<R>) -> Self {
        Segments { source: Source::Here(tok) }
    }

    /// Framing (reading, segment splitting, the UTF-8 check) on a thread of its own, handing
    /// over a read buffer's segments at a time, so that it overlaps with checking them on this
    /// one. The thread ends with the input, or at its next hand-over once this is dropped. With
    /// one CPU, framing stays in line (a second thread would only add hand-overs).
    pub fn piped(tok: Tokenizer<R>) -> Result<Self, ReadError>
    where
        R: Send + 'static,
    {
        if std::thread::available_parallelism().map_or(1, |n| n.get()) < 2 {
            return Ok(Self::here(tok));
        }
        let (full_tx, full) = std::sync::mpsc::sync_channel(BATCHES_IN_FLIGHT);
        let (empty, empty_rx) = std::sync::mpsc::sync_channel(BATCHES_IN_FLIGHT + 1);
        std::thread::Builder::new()
            .name("x12-framing".into())
            .spawn(move || frame_batches(tok, full_tx, empty_rx))
            .map_err(|e| ReadError::Io(std::io::Error::other(format!("no thread to read it ({e})"))))?;
        Ok(Segments { source: Source::Piped { full, empty, batch: Batch::default(), stopped: None } })
    }

    /// Like `Tokenizer::next_into`.
    pub fn next_into(&mut self, seg: &mut Segment) -> Result<bool, ReadError> {
        match &mut self.source {
            Source::Here(tok) => tok.next_into(seg),
            Source::Piped { full, empty, batch, stopped } => loop {
                if let Some(stop) = stopped {
                    return stop.again();
                }
                if let Some(r) = batch.next_into(seg) {
                    if !matches!(r, Ok(true)) {
                        *stopped = Some(match &r {
                            Err(e) => Stop::Failed(e.clone()),
                            Ok(_) => Stop::End,
                        });
                    }
                    return r;
                }
                let next =
                    recv_polling(full).map_err(|_| ReadError::Io(std::io::Error::other("the reading thread stopped")));
                let next = match next {
                    Ok(b) => b,
                    Err(e) => {
                        *stopped = Some(Stop::Failed(e.clone()));
                        return Err(e);
                    }
                };
                let spent = std::mem::replace(batch, next);
                // The framing thread may be gone already (it reached the end): then the spent
                // buffers are dropped.
                let _ = empty.try_send(spent);
            },
        }
    }
}

/// The framing thread: fills batches until the input ends or fails, or the reader goes away.
fn frame_batches<R: Read>(mut tok: Tokenizer<R>, full: SyncSender<Batch>, empty: Receiver<Batch>) {
    // Segments framed for `next_into` before the tokenizer moved here come first.
    let left = std::mem::take(&mut tok.batch);
    if left.at < left.len || left.end.is_some() {
        let last = left.end.is_some();
        if send_polling(&full, left).is_err() || last {
            return;
        }
    }
    loop {
        let mut batch = empty.try_recv().unwrap_or_default();
        tok.fill_batch(&mut batch);
        let last = batch.end.is_some();
        if send_polling(&full, batch).is_err() || last {
            return;
        }
    }
}

/// Splits a segment's bytes into its elements. Invalid UTF-8 is replaced by U+FFFD element by
/// element, so a non-ASCII separator still splits where it is.
fn split(body: &[u8], sep: u8, ordinal: u64, seg: &mut Segment) {
    match std::str::from_utf8(body) {
        Ok(text) if sep.is_ascii() => split_text(text, sep, ordinal, seg),
        _ => {
            seg.ordinal = ordinal;
            seg.elements.clear();
            let mut from = 0;
            let ends = memchr_iter(sep, body).chain(std::iter::once(body.len()));
            for i in ends {
                seg.elements.push(&String::from_utf8_lossy(&body[from..i]));
                from = i + 1;
            }
        }
    }
}

/// Splits a segment's text at an ASCII separator (every split is a character boundary). A plain
/// loop: elements are a few bytes long, shorter than a vectorised search pays for.
fn split_text(text: &str, sep: u8, ordinal: u64, seg: &mut Segment) {
    seg.ordinal = ordinal;
    seg.elements.clear();
    let mut from = 0;
    for (i, b) in text.bytes().enumerate() {
        if b == sep {
            seg.elements.push(text.get(from..i).unwrap_or(""));
            from = i + 1;
        }
    }
    seg.elements.push(text.get(from..).unwrap_or(""));
}

#[cfg(test)]
mod tests {
    use super::*;

    const ISA: &str =
        "ISA*00*          *00*          *ZZ*WAREHOUSE      *ZZ*STITCHBRIDGE   *240315*1200*U*00401*000000001*0*P*>~";

    fn all(input: &[u8]) -> Result<Vec<(u64, Vec<String>)>, ReadError> {
        let (mut t, isa) = Tokenizer::open(input, 1024, u64::MAX)?;
        let mut out = vec![(isa.ordinal, isa.elements.iter().map(String::from).collect())];
        let mut seg = Segment::default();
        while t.next_into(&mut seg)? {
            out.push((seg.ordinal, seg.elements.iter().map(String::from).collect()));
        }
        Ok(out)
    }

    /// Reads one byte at a time: nothing may depend on how reads are cut.
    struct Trickle<'a>(&'a [u8]);
    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            match (self.0.split_first(), buf.first_mut()) {
                (Some((b, rest)), Some(slot)) => {
                    *slot = *b;
                    self.0 = rest;
                    Ok(1)
                }
                _ => Ok(0),
            }
        }
    }

    #[test]
    fn isa_is_106_characters() {
        assert_eq!(ISA.len(), ISA_LEN);
        let s = separators(ISA.as_bytes()).unwrap();
        assert_eq!((s.element, s.component, s.segment, s.repetition), (b'*', b'>', b'~', None));
    }

    #[test]
    fn segments_with_ordinals_and_line_breaks() {
        let input = format!("\u{feff}\r\n{ISA}\r\nGS*IB*A*B~ST*846*0001~\nLIN**SK*RED~SE*3*0001~");
        let got = all(input.as_bytes()).unwrap();
        let ids: Vec<_> = got.iter().map(|(o, e)| (*o, e[0].clone())).collect();
        assert_eq!(ids, [(1, "ISA".into()), (2, "GS".into()), (3, "ST".into()), (4, "LIN".into()), (5, "SE".into())]);
        assert_eq!(got[3].1, ["LIN", "", "SK", "RED"]);
        assert_eq!(got[0].1.len(), 17);
        assert_eq!(got[0].1[16], ">");
        let trickled = {
            let (mut t, _) = Tokenizer::open(Trickle(input.as_bytes()), 1024, u64::MAX).unwrap();
            let mut seg = Segment::default();
            let mut n = 0;
            while t.next_into(&mut seg).unwrap() {
                n += 1;
            }
            n
        };
        assert_eq!(trickled, 4);
    }

    #[test]
    fn newline_as_terminator_with_crlf() {
        let isa = ISA.replace('~', "\n");
        let input = format!("{isa}GS*IB*A*B\r\nST*846*0001\r\n\r\nSE*2*0001\n");
        let got = all(input.as_bytes()).unwrap();
        assert_eq!(got.len(), 4);
        assert_eq!(got[3].1, ["SE", "2", "0001"]);
    }

    #[test]
    fn truncated_and_broken_isa() {
        assert!(matches!(all(&ISA.as_bytes()[..60]), Err(ReadError::Isa(m)) if m.contains("truncated")));
        assert!(matches!(all(b"hello"), Err(ReadError::Isa(_))));
        assert!(matches!(all(b""), Err(ReadError::Isa(_))));
        // The same separator twice.
        let twice = ISA.replace('>', "*");
        assert!(matches!(all(twice.as_bytes()), Err(ReadError::Isa(m)) if m.contains("same")));
    }

    #[test]
    fn repetition_separator_in_00501() {
        let isa = ISA.replace("*U*00401*", "*^*00501*");
        let s = separators(isa.as_bytes()).unwrap();
        assert_eq!(s.repetition, Some(b'^'));
    }

    #[test]
    fn limits() {
        let long = format!("{ISA}GS*{}~", "x".repeat(5000));
        let (mut t, _) = Tokenizer::open(long.as_bytes(), 1024, u64::MAX).unwrap();
        let mut seg = Segment::default();
        assert!(matches!(t.next_into(&mut seg), Err(ReadError::SegmentTooLong { ordinal: 2, .. })));
        // The limit holds however the reader cuts its reads.
        let too_large = |r: Result<bool, ReadError>| matches!(r, Err(ReadError::TooLarge { limit: 200 }));
        assert!(matches!(Tokenizer::open(long.as_bytes(), 100_000, 200), Err(ReadError::TooLarge { limit: 200 })));
        let (mut t, _) = Tokenizer::open(Trickle(long.as_bytes()), 100_000, 200).unwrap_or_else(|_| panic!("ISA fits"));
        let r = (0..10).map(|_| t.next_into(&mut seg)).find(|r| r.is_err());
        assert!(r.is_some_and(too_large));
    }

    #[test]
    fn invalid_utf8_is_replaced_per_element() {
        let mut input = format!("{ISA}LIN**SK*").into_bytes();
        input.extend_from_slice(b"R\xffD*x~");
        let got = all(&input).unwrap();
        assert_eq!(got[1].1, ["LIN", "", "SK", "R\u{fffd}D", "x"]);
    }

    /// Past a batch's bounds (segments, bytes, the UTF-8 window), in line and piped, with reads
    /// whole and cut small: every segment, in order, with its ordinal.
    #[test]
    fn segments_across_batches() {
        let mut input = format!("{ISA}\n").into_bytes();
        let mut want = Vec::new();
        for i in 0..(BATCH_SEGMENTS as u64 * 5) {
            // Past the first batch and its window, a value that is not UTF-8 and one that is.
            let value: &[u8] = match i {
                17_000 => b"R\xffD",
                17_001 => "\u{e9}t\u{e9}".as_bytes(),
                _ => b"1",
            };
            input.extend_from_slice(b"X*");
            input.extend_from_slice(value);
            input.extend_from_slice(b"~");
            want.push((i + 2, vec!["X".to_string(), String::from_utf8_lossy(value).into_owned()]));
        }
        assert!(input.len() > BATCH_BYTES);
        fn read_all<R: Read>(mut segs: Segments<R>) -> Vec<(u64, Vec<String>)> {
            let (mut seg, mut got) = (Segment::default(), Vec::new());
            while segs.next_into(&mut seg).unwrap() {
                got.push((seg.ordinal, seg.elements.iter().map(String::from).collect::<Vec<_>>()));
            }
            assert!(!segs.next_into(&mut seg).unwrap(), "the end stays the end");
            got
        }
        let (t, _) = Tokenizer::open(input.as_slice(), 1024, u64::MAX).unwrap();
        assert_eq!(read_all(Segments::here(t)), want);
        let (t, _) = Tokenizer::open(std::io::Cursor::new(input.clone()), 1024, u64::MAX).unwrap();
        assert_eq!(read_all(Segments::piped(t).unwrap()), want);
        let (t, _) = Tokenizer::open(Chunked(input.clone(), 0), 1024, u64::MAX).unwrap();
        assert_eq!(read_all(Segments::piped(t).unwrap()), want);
        // Piped after some segments were read here: it goes on from there.
        let (mut t, _) = Tokenizer::open(std::io::Cursor::new(input.clone()), 1024, u64::MAX).unwrap();
        let mut seg = Segment::default();
        for _ in 0..10 {
            assert!(t.next_into(&mut seg).unwrap());
        }
        assert_eq!(read_all(Segments::piped(t).unwrap()), want[10..]);
    }

    /// Reads of 5 bytes, from a buffer of its own (for a framing thread).
    struct Chunked(Vec<u8>, usize);
    impl Read for Chunked {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let rest = self.0.get(self.1..).unwrap_or_default();
            let n = rest.len().min(buf.len()).min(5);
            buf[..n].copy_from_slice(&rest[..n]);
            self.1 += n;
            Ok(n)
        }
    }

    /// An error is handed out after the segments before it, and again on every later call.
    #[test]
    fn errors_come_in_place_and_stay() {
        let input = format!("{ISA}GS*1~ST*2~GS*{}~SE*3~", "x".repeat(2000));
        for piped in [false, true] {
            let (t, _) = Tokenizer::open(std::io::Cursor::new(input.clone().into_bytes()), 1024, u64::MAX).unwrap();
            let mut segs = if piped { Segments::piped(t).unwrap() } else { Segments::here(t) };
            let mut seg = Segment::default();
            assert!(segs.next_into(&mut seg).unwrap() && seg.ordinal == 2);
            assert!(segs.next_into(&mut seg).unwrap() && seg.ordinal == 3);
            for _ in 0..2 {
                assert!(matches!(segs.next_into(&mut seg), Err(ReadError::SegmentTooLong { ordinal: 4, limit: 1024 })));
            }
        }
    }

    #[test]
    fn last_segment_without_terminator() {
        let input = format!("{ISA}IEA*1*000000001");
        let got = all(input.as_bytes()).unwrap();
        assert_eq!(got[1].1, ["IEA", "1", "000000001"]);
    }
}
