//! The length-only pass over a BSON file (mongodump): how many documents
//! it holds and where some of them start, found by following the chain of
//! length headers from the first byte. That pass reads the whole file and
//! comes before a run can plan its ranges, so on a large file a second
//! thread walks the second half at the same time, from a place where a
//! chain of plausible documents begins. It is a guess, and its result is
//! used only from the first document both walks start at: from there on
//! the two chains are the same (each header decides the next), so the
//! result is the sequential walk's, exactly. A guess that never meets the
//! first walk costs the time of the sequential pass.
//!
//! Knows the BSON length header, a first element's type byte (to guess
//! where a document starts) and files; nothing else of BSON's contents.

use std::fs::File;
use std::io::{self, BufReader, Read, Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use super::files::MarkGrid;

/// Below this size a file is walked by one thread (a second does not pay).
const TWO_HALVES_FROM: u64 = 32 << 20;

/// What the pass found: the number of documents, and, for the first
/// document starting at or after each multiple of `step` (at most one per
/// document, never offset 0), its byte offset.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Walked {
    pub docs: u64,
    pub marks: Vec<u64>,
}

/// Whether a BSON length header can start a document: at least the five
/// bytes of an empty one, at most 48 MiB (MongoDB stores at most 16; the
/// rest is headroom, and anything larger is garbage).
pub(super) fn plausible_length(declared: u32) -> bool {
    (5..=48 * 1024 * 1024).contains(&declared)
}

/// Walks `path` (`len` bytes long) as a reader would: it stops at a header
/// that cannot be right, where the reader will stop too and say why.
pub(super) fn walk(path: &Path, len: u64, step: u64) -> io::Result<Walked> {
    // One core: the second thread would only take turns with the first.
    let one_core = std::thread::available_parallelism().map_or(1, |n| n.get()) == 1;
    let two_halves_from = if one_core { u64::MAX } else { TWO_HALVES_FROM };
    walk_with(path, len, step, two_halves_from).map(|(w, _)| w)
}

/// The walk, and whether the two halves met (for the tests).
fn walk_with(path: &Path, len: u64, step: u64, two_halves_from: u64) -> io::Result<(Walked, bool)> {
    if len < two_halves_from {
        return Chain::walk(File::open(path)?, 0, len, step, |_| Ok(Flow::Go)).map(|c| (c.into_walked(), false));
    }
    // Set when the first walk ends without needing the second (it stopped
    // before the middle): the second stops at its next mark.
    let unneeded = AtomicBool::new(false);
    std::thread::scope(|scope| {
        // The second half, from a guessed document boundary.
        let second = scope.spawn(|| -> io::Result<Option<Chain>> {
            let file = File::open(path)?;
            let Some(start) = guess_start(&file, len / 2, len)? else { return Ok(None) };
            Chain::walk(file, start, len, step, |_| {
                Ok(if unneeded.load(Ordering::Relaxed) { Flow::Stop } else { Flow::Go })
            })
            .map(Some)
        });
        let mut second = Some(second);
        let mut guess: Option<Chain> = None;
        let mut at = 0usize;
        let mut met: Option<(u64, u64)> = None;
        let first = Chain::walk(File::open(path)?, 0, len, step, |c| {
            let Some(&(offset, _)) = c.marks.last() else { return Ok(Flow::Go) };
            // The guess starts past the middle.
            if offset < len / 2 {
                return Ok(Flow::Go);
            }
            if let Some(handle) = second.take() {
                // A guess that failed is no guess: the first walk goes on
                // alone, and meets the file's errors itself.
                guess = handle.join().ok().and_then(Result::ok).flatten();
            }
            let Some(g) = &guess else { return Ok(Flow::Go) };
            while at < g.marks.len() && g.marks[at].0 < offset {
                at += 1;
            }
            match g.marks.get(at) {
                Some(&(o, before)) if o == offset => {
                    met = Some((offset, before));
                    Ok(Flow::Stop)
                }
                // Past the guess's last mark without meeting it: walk on alone.
                None if g.start <= offset => {
                    guess = None;
                    Ok(Flow::Go)
                }
                _ => Ok(Flow::Go),
            }
        })?;
        if let Some(handle) = second {
            unneeded.store(true, Ordering::Relaxed);
            let _ = handle.join();
        }
        Ok(match (met, guess) {
            (Some((offset, before)), Some(g)) => {
                // The first walk counted the meeting document and marked it.
                let docs = first.docs + (g.docs - before) - 1;
                let mut marks: Vec<u64> = first.marks.iter().map(|m| m.0).collect();
                marks.extend(g.marks.iter().map(|m| m.0).filter(|&m| m > offset));
                (Walked { docs, marks }, true)
            }
            _ => (first.into_walked(), false),
        })
    })
}

/// Whether a walk goes on after a document it marked.
enum Flow {
    Go,
    Stop,
}

/// One chain of headers: documents counted, and each mark with the number
/// of documents before it.
struct Chain {
    start: u64,
    docs: u64,
    marks: Vec<(u64, u64)>,
}

impl Chain {
    /// Follows headers from `start` (a document boundary, or a guess at
    /// one) until the file ends, a header cannot be right, or `on_mark`
    /// says stop after a mark.
    fn walk(
        file: File,
        start: u64,
        len: u64,
        step: u64,
        mut on_mark: impl FnMut(&Chain) -> io::Result<Flow>,
    ) -> io::Result<Chain> {
        let mut chain = Chain { start, docs: 0, marks: Vec::new() };
        let mut r = BufReader::with_capacity(1 << 20, file);
        if start > 0 {
            r.seek(SeekFrom::Start(start))?;
        }
        // A guessed chain's first document is marked, so a meeting there is seen.
        let mut grid = MarkGrid::from(step, start);
        let mut pos = start;
        let mut header = [0u8; 4];
        while pos + 4 <= len {
            if r.read_exact(&mut header).is_err() {
                break;
            }
            let declared = u32::from_le_bytes(header);
            let size = u64::from(declared);
            if !plausible_length(declared) || pos + size > len {
                break;
            }
            let marked = grid.mark(pos);
            if marked {
                chain.marks.push((pos, chain.docs));
            }
            chain.docs += 1;
            if marked && matches!(on_mark(&chain)?, Flow::Stop) {
                break;
            }
            r.seek_relative(size as i64 - 4)?;
            pos += size;
        }
        Ok(chain)
    }

    fn into_walked(self) -> Walked {
        Walked { docs: self.docs, marks: self.marks.into_iter().map(|m| m.0).collect() }
    }
}

/// How many documents in a row must look right where a guess begins.
const IN_A_ROW: usize = 4;
/// How far past the middle a guess is looked for.
const LOOK: u64 = 1 << 20;

/// The first offset from `from` on where `IN_A_ROW` documents in a row
/// look like documents: a plausible length within the file, a known
/// element type (or the end of an empty document) after it, and a final
/// NUL. `None` when there is none nearby.
fn guess_start(file: &File, from: u64, len: u64) -> io::Result<Option<u64>> {
    let window = LOOK.min(len - from) as usize;
    let mut buf = vec![0u8; window];
    file.read_exact_at(&mut buf, from)?;
    let byte_at = |at: u64| -> io::Result<u8> {
        if at >= from && at < from + window as u64 {
            return Ok(buf[(at - from) as usize]);
        }
        let mut b = [0u8; 1];
        file.read_exact_at(&mut b, at)?;
        Ok(b[0])
    };
    let header_at = |at: u64| -> io::Result<Option<u32>> {
        if at + 5 > len {
            return Ok(None);
        }
        let mut h = [0u8; 4];
        for (i, b) in h.iter_mut().enumerate() {
            *b = byte_at(at + i as u64)?;
        }
        Ok(Some(u32::from_le_bytes(h)))
    };
    'candidates: for candidate in from..from + window as u64 {
        let mut at = candidate;
        for _ in 0..IN_A_ROW {
            let Some(declared) = header_at(at)? else { continue 'candidates };
            let size = u64::from(declared);
            if !plausible_length(declared) || at + size > len {
                continue 'candidates;
            }
            let first = byte_at(at + 4)?;
            let element = matches!(first, 0x01..=0x13 | 0x7F | 0xFF) || (first == 0 && size == 5);
            if !element || byte_at(at + size - 1)? != 0 {
                continue 'candidates;
            }
            at += size;
            if at == len {
                break;
            }
        }
        return Ok(Some(candidate));
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    /// A BSON-shaped document of `size` bytes (at least 8): a length, an
    /// element type, filler without NULs, a final NUL.
    fn doc(size: usize, seed: usize) -> Vec<u8> {
        let mut d = (size as u32).to_le_bytes().to_vec();
        d.push(0x02);
        d.extend((0..size - 6).map(|i| 1 + ((i * 7 + seed) % 250) as u8));
        d.push(0);
        d
    }

    fn file_of(bytes: &[u8]) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().expect("temp file");
        f.write_all(bytes).expect("write");
        f
    }

    /// The pass as one thread makes it, written again plainly: the oracle.
    fn sequential(bytes: &[u8], step: u64) -> Walked {
        let (mut out, mut pos, mut next) = (Walked::default(), 0usize, step);
        while pos + 4 <= bytes.len() {
            let declared = u32::from_le_bytes([bytes[pos], bytes[pos + 1], bytes[pos + 2], bytes[pos + 3]]);
            if !plausible_length(declared) || pos + declared as usize > bytes.len() {
                break;
            }
            if pos as u64 >= next {
                out.marks.push(pos as u64);
                next = (pos as u64 / step + 1) * step;
            }
            out.docs += 1;
            pos += declared as usize;
        }
        out
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]
        /// Halves walked at once give the sequential walk's result, on files
        /// with documents of any size, documents whose bytes look like
        /// headers, and garbage that stops the walk.
        #[test]
        fn two_halves_walk_as_one(
            sizes in proptest::collection::vec(8usize..3000, 1..400),
            fake in proptest::collection::vec(proptest::bool::ANY, 400),
            garbage_at in proptest::option::of(0usize..400),
            step in 1u64..5000,
        ) {
            let mut bytes = Vec::new();
            for (i, &size) in sizes.iter().enumerate() {
                if garbage_at == Some(i) {
                    bytes.extend_from_slice(&[0xFF, 0xFF, 0xFF, 0x7F, 1, 2, 3]);
                }
                let mut d = doc(size, i);
                // A body that holds a plausible header of its own.
                if fake[i] && size > 20 {
                    d[6..10].copy_from_slice(&((size as u32) - 9).to_le_bytes());
                    d[10] = 0x02;
                }
                bytes.extend(d);
            }
            let f = file_of(&bytes);
            let len = bytes.len() as u64;
            let expected = sequential(&bytes, step);
            proptest::prop_assert_eq!(walk_with(f.path(), len, step, 0).expect("walk").0, expected);
        }
    }

    /// On documents as mongodump writes them the halves meet, so the
    /// second thread's work is used, and the result is still exact.
    #[test]
    fn the_halves_meet_on_a_dump() {
        let mut bytes = Vec::new();
        for i in 0..5000 {
            let d = bson::doc! { "_id": i, "name": format!("learner {i}"), "tags": ["a", "b"], "n": i as f64 / 3.0 };
            bytes.extend(bson::serialize_to_vec(&d).expect("bson"));
        }
        let f = file_of(&bytes);
        for step in [1, 97, 4096] {
            let (got, met) = walk_with(f.path(), bytes.len() as u64, step, 0).expect("walk");
            assert!(met, "step {step}");
            assert_eq!(got, sequential(&bytes, step), "step {step}");
        }
    }

    #[test]
    fn a_file_without_documents_walks_to_nothing() {
        for bytes in [&b""[..], &b"\x05\x00"[..], &[0u8; 64][..]] {
            let f = file_of(bytes);
            let got = walk_with(f.path(), bytes.len() as u64, 7, 0).expect("walk").0;
            assert_eq!(got, sequential(bytes, 7));
        }
    }
}
