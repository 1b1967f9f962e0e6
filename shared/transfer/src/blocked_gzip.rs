//! gzip in independent blocks, compressed and inflated on every core.
//!
//! A gzip file may hold any number of members one after the other, and readers inflate them
//! as one stream (RFC 1952 §2.2; Go's `compress/gzip`, which Docker, containerd and skopeo
//! use, GNU gzip and zlib's `gunzip` all do). strata writes a pushed layer as one member per
//! [`BLOCK`] of the tar, each with an extra header field (FEXTRA, subfield `ST`, 4 bytes) that
//! holds the member's own length, the way BGZF (SAM/BAM's blocked gzip) does with 64 KiB
//! blocks. Every reader sees an ordinary gzip layer; strata, reading the lengths, cuts the
//! download into members as it arrives and inflates them on every core at once. A gzip
//! stream of one member, the usual kind, has no such field and is inflated as a stream.
//!
//! The output depends only on the input, [`BLOCK`] and the level, never on the number of
//! threads, so a layer always compresses to the same digest. Each member is deflated by
//! libdeflate (vendored by `libdeflate-sys`, its version pinned by Cargo.lock; its output is
//! the same on every CPU, NEWS.md of 1.x), which at level 1 both compresses smaller than
//! zlib's level 1 and inflates faster.
//!
//! A member is checked against its trailer, the last 8 bytes of its stated length: its
//! deflate data must inflate to the size stated there, with the CRC-32 stated there. A member that fails this is read again, with everything after it, as a plain
//! gzip stream, so another tool's use of the same subfield ID cannot make strata misread a
//! valid stream. Everything is also verified by the callers' digests (the compressed bytes
//! against the descriptor, the tar against its diff_id), so a damaged or hostile blob is
//! refused either way.

use std::{
    cell::RefCell,
    collections::VecDeque,
    io::{Cursor, ErrorKind, Read, Write},
    sync::{Arc, Mutex, mpsc},
};

/// Uncompressed bytes in one member (the last may hold fewer).
pub const BLOCK: usize = 1 << 20;
/// The largest member length or uncompressed size accepted from a blob.
const MAX_MEMBER: usize = 16 << 20;
/// A member's header: magic, method, FLG=FEXTRA, MTIME, XFL, OS, XLEN=8, `ST`, 4, length.
const HEADER_LEN: usize = 20;
/// CRC-32 and ISIZE.
const TRAILER_LEN: usize = 8;
/// Spare capacity of each inflated piece, so that a consumer appending a short trailer does
/// it in place: the layer store seals every chunk with a 4-byte checksum, and takes a piece
/// handed over whole (one chunk, at a chunk boundary) without copying it.
const SPARE: usize = 16;

fn header(member_len: u32) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[..4].copy_from_slice(&[0x1f, 0x8b, 8, 0x04]);
    // MTIME 0, XFL 0, OS 255 (unknown): nothing of the machine leaks into the digest
    h[9] = 255;
    h[10..12].copy_from_slice(&8u16.to_le_bytes());
    h[12..16].copy_from_slice(&[b'S', b'T', 4, 0]);
    h[16..20].copy_from_slice(&member_len.to_le_bytes());
    h
}

/// The member's length if `h` is a header of strata's form.
fn member_len(h: &[u8]) -> Option<usize> {
    if h.len() < HEADER_LEN
        || h[..4] != [0x1f, 0x8b, 8, 0x04]
        || h[10..12] != 8u16.to_le_bytes()
        || h[12..16] != [b'S', b'T', 4, 0]
    {
        return None;
    }
    Some(u32::from_le_bytes([h[16], h[17], h[18], h[19]]) as usize)
}

/// Worker threads: one per core, at most four (beyond that the download is the limit).
fn workers() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get().min(4))
}

/// Compresses everything `reader` gives into `sink` as blocked gzip; returns the number of
/// uncompressed bytes. Empty input gives one empty member (a gzip stream has at least one).
pub fn compress(reader: &mut dyn Read, sink: &mut dyn Write, level: u32) -> std::io::Result<u64> {
    let level = libdeflater::CompressionLvl::new(level as i32)
        .map_err(|_| std::io::Error::new(ErrorKind::InvalidInput, "bad gzip level"))?;
    let mut total = 0u64;
    let mut first = true;
    run_ordered(
        || {
            let block = read_up_to(reader, BLOCK)?;
            if block.is_empty() && !first {
                return Ok(None);
            }
            first = false;
            total += block.len() as u64;
            Ok(Some(block))
        },
        || libdeflater::Compressor::new(level),
        |c, block: Vec<u8>| compress_member(c, &block),
        |member| sink.write_all(&member),
    )?;
    Ok(total)
}

fn compress_member(c: &mut libdeflater::Compressor, block: &[u8]) -> std::io::Result<Vec<u8>> {
    let bound = c.deflate_compress_bound(block.len());
    let mut out = vec![0u8; HEADER_LEN + bound + TRAILER_LEN];
    let n = c
        .deflate_compress(block, &mut out[HEADER_LEN..HEADER_LEN + bound])
        .map_err(|e| std::io::Error::other(format!("deflate: {e}")))?;
    let len = HEADER_LEN + n + TRAILER_LEN;
    out[..HEADER_LEN].copy_from_slice(&header(len as u32));
    let trailer = HEADER_LEN + n;
    out[trailer..trailer + 4].copy_from_slice(&libdeflater::crc32(block).to_le_bytes());
    out[trailer + 4..len].copy_from_slice(&(block.len() as u32).to_le_bytes());
    out.truncate(len);
    Ok(out)
}

/// Inflates the gzip stream `reader` gives, handing the output to `emit` in pieces of at
/// most [`BLOCK`] bytes, in order; returns the number of bytes inflated.
///
/// Members of strata's form are inflated on every core. From the first member that is not
/// (another tool's gzip, a member appended later), or whose stated length does not hold up
/// (another tool may use the same subfield ID for something else), the rest is inflated as
/// one stream, starting with that member's own bytes: a valid gzip stream is always read
/// whole and right, whatever its extra fields say, and a corrupt one fails as a stream.
pub fn decompress(
    reader: &mut dyn Read,
    emit: &mut dyn FnMut(Vec<u8>) -> std::io::Result<()>,
) -> std::io::Result<u64> {
    let mut total = 0u64;
    // members read and not yet emitted, in order; when one cannot be inflated on its own,
    // it and those after it are read again as a stream
    let in_flight: RefCell<VecDeque<Arc<Vec<u8>>>> = RefCell::default();
    let replay: RefCell<Option<Vec<u8>>> = RefCell::default();
    let mut rest: Vec<u8> = Vec::new();
    let mut head = read_up_to(reader, HEADER_LEN)?;
    let blocked = member_len(&head).is_some();
    if blocked {
        run_ordered(
            || {
                if replay.borrow().is_some() {
                    return Ok(None);
                }
                if head.is_empty() {
                    head = read_up_to(reader, HEADER_LEN)?;
                    if head.is_empty() {
                        return Ok(None);
                    }
                }
                let len = member_len(&head)
                    .filter(|l| (HEADER_LEN + TRAILER_LEN..=MAX_MEMBER).contains(l));
                let Some(len) = len else {
                    rest = std::mem::take(&mut head);
                    return Ok(None);
                };
                let mut member = std::mem::take(&mut head);
                member.reserve_exact(len - member.len());
                reader
                    .take((len - HEADER_LEN) as u64)
                    .read_to_end(&mut member)?;
                if member.len() < len {
                    // cut short: the stream reading says so
                    rest = member;
                    return Ok(None);
                }
                let member = Arc::new(member);
                in_flight.borrow_mut().push_back(member.clone());
                Ok(Some(member))
            },
            libdeflater::Decompressor::new,
            |d, member: Arc<Vec<u8>>| Ok(inflate_member(d, &member)),
            |out| {
                let member = in_flight.borrow_mut().pop_front();
                let mut replay = replay.borrow_mut();
                match (out, replay.as_mut()) {
                    (Some(out), None) => {
                        total += out.len() as u64;
                        emit(out)
                    }
                    (_, Some(bytes)) => {
                        bytes.extend(member.iter().flat_map(|m| m.iter()));
                        Ok(())
                    }
                    (None, None) => {
                        *replay = Some(member.map(|m| m.to_vec()).unwrap_or_default());
                        Ok(())
                    }
                }
            },
        )?;
    } else {
        rest = head;
    }
    let mut replay = replay.into_inner().unwrap_or_default();
    if blocked && replay.is_empty() && rest.is_empty() {
        return Ok(total);
    }
    replay.extend_from_slice(&rest);
    let mut stream = flate2::read::MultiGzDecoder::new(Cursor::new(replay).chain(reader));
    loop {
        let out = read_up_to(&mut stream, BLOCK)?;
        if out.is_empty() {
            return Ok(total);
        }
        total += out.len() as u64;
        emit(out)?;
    }
}

/// One member inflated, if it is a whole gzip member ending with the trailer its stated
/// length puts last; `None` if not.
///
/// The header is strata's fixed form ([`member_len`] checked it), so the deflate data runs
/// from [`HEADER_LEN`] to the trailer at the stated end, and is inflated raw: the CRC-32 is
/// computed once, here, not also by libdeflate's gzip wrapper (which checks the trailer
/// right after the deflate data, the same 8 bytes when the stated length is this member's).
fn inflate_member(d: &mut libdeflater::Decompressor, member: &[u8]) -> Option<Vec<u8>> {
    let t = &member[member.len() - TRAILER_LEN..];
    let crc = u32::from_le_bytes([t[0], t[1], t[2], t[3]]);
    let size = u32::from_le_bytes([t[4], t[5], t[6], t[7]]) as usize;
    if size > MAX_MEMBER {
        return None;
    }
    let mut out = Vec::with_capacity(size + SPARE);
    out.resize(size, 0);
    let n = d
        .deflate_decompress(&member[HEADER_LEN..member.len() - TRAILER_LEN], &mut out)
        .ok()?;
    (n == size && libdeflater::crc32(&out) == crc).then_some(out)
}

/// Reads until `limit` bytes or the end of the stream.
fn read_up_to(reader: &mut dyn Read, limit: usize) -> std::io::Result<Vec<u8>> {
    let mut buf = Vec::with_capacity(limit);
    reader.take(limit as u64).read_to_end(&mut buf)?;
    Ok(buf)
}

/// Runs `work` over the jobs `next_job` yields on [`workers`] threads (each with its own
/// `new_state`), and hands the results to `emit` in the jobs' order. At most two jobs per
/// worker are in flight. The first error ends it: jobs still queued are dropped.
fn run_ordered<J: Send, T: Send, S>(
    mut next_job: impl FnMut() -> std::io::Result<Option<J>>,
    new_state: impl Fn() -> S + Sync,
    work: impl Fn(&mut S, J) -> std::io::Result<T> + Sync,
    mut emit: impl FnMut(T) -> std::io::Result<()>,
) -> std::io::Result<()> {
    type Reply<T> = mpsc::SyncSender<std::io::Result<T>>;
    let workers = workers();
    let (job_tx, job_rx) = mpsc::sync_channel::<(J, Reply<T>)>(workers);
    let job_rx = Mutex::new(job_rx);
    std::thread::scope(|scope| {
        for _ in 0..workers {
            let (job_rx, new_state, work) = (&job_rx, &new_state, &work);
            scope.spawn(move || {
                let mut state = new_state();
                loop {
                    let job = job_rx.lock().unwrap_or_else(|p| p.into_inner()).recv();
                    let Ok((job, reply)) = job else { return };
                    // the receiver is gone only when the run already failed
                    let _ = reply.send(work(&mut state, job));
                }
            });
        }
        let mut pending: VecDeque<mpsc::Receiver<std::io::Result<T>>> = VecDeque::new();
        let wait = |rx: mpsc::Receiver<std::io::Result<T>>| {
            rx.recv()
                .unwrap_or_else(|_| Err(std::io::Error::other("a compression worker stopped")))
        };
        let result = (|| {
            loop {
                if pending.len() >= 2 * workers
                    && let Some(rx) = pending.pop_front()
                {
                    emit(wait(rx)?)?;
                }
                let Some(job) = next_job()? else { break };
                let (tx, rx) = mpsc::sync_channel(1);
                job_tx
                    .send((job, tx))
                    .map_err(|_| std::io::Error::other("the compression workers stopped"))?;
                pending.push_back(rx);
            }
            while let Some(rx) = pending.pop_front() {
                emit(wait(rx)?)?;
            }
            Ok(())
        })();
        // workers finish the job in hand and see the queue closed
        drop(job_tx);
        result
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(len: usize) -> Vec<u8> {
        // compressible but not trivially: a counter's decimal digits and a xorshift
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let mut out = Vec::with_capacity(len);
        let mut i = 0u64;
        while out.len() < len {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            out.extend_from_slice(format!("{i} {} ", x % 1000).as_bytes());
            i += 1;
        }
        out.truncate(len);
        out
    }

    fn compressed(data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        assert_eq!(
            compress(&mut &data[..], &mut out, 1).unwrap(),
            data.len() as u64
        );
        out
    }

    fn inflated(gz: &[u8]) -> std::io::Result<Vec<u8>> {
        let mut out = Vec::new();
        let n = decompress(&mut &gz[..], &mut |piece| {
            assert!(piece.len() <= BLOCK);
            out.extend_from_slice(&piece);
            Ok(())
        })?;
        assert_eq!(n, out.len() as u64);
        Ok(out)
    }

    #[test]
    fn round_trips_and_any_gzip_reader_reads_it_as_one_stream() {
        for len in [0, 1, BLOCK - 1, BLOCK, BLOCK + 1, 3 * BLOCK + 12_345] {
            let data = sample(len);
            let gz = compressed(&data);
            assert_eq!(inflated(&gz).unwrap(), data, "len {len}");
            // zlib-rs through flate2, which reads members as one stream like Go and gzip
            let mut plain = Vec::new();
            flate2::read::MultiGzDecoder::new(&gz[..])
                .read_to_end(&mut plain)
                .unwrap();
            assert_eq!(plain, data, "len {len}");
            let members = len.div_ceil(BLOCK).max(1);
            let mut at = 0;
            for _ in 0..members {
                let l = member_len(&gz[at..]).expect("a member of strata's form");
                at += l;
            }
            assert_eq!(
                at,
                gz.len(),
                "len {len}: the stated lengths tile the stream"
            );
        }
    }

    #[test]
    fn output_is_the_same_whatever_the_threads() {
        let data = sample(5 * BLOCK + 7);
        let a = compressed(&data);
        // one member at a time, on this thread
        let mut c = libdeflater::Compressor::new(libdeflater::CompressionLvl::new(1).unwrap());
        let serial: Vec<u8> = data
            .chunks(BLOCK)
            .flat_map(|b| compress_member(&mut c, b).unwrap())
            .collect();
        assert_eq!(a, serial);
        assert_eq!(a, compressed(&data));
    }

    #[test]
    fn other_gzip_and_a_foreign_member_appended_are_inflated_as_a_stream() {
        let data = sample(2 * BLOCK + 99);
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(&data).unwrap();
        let foreign = enc.finish().unwrap();
        assert_eq!(inflated(&foreign).unwrap(), data);
        let mut both = compressed(&data);
        both.extend_from_slice(&foreign);
        let mut twice = data.clone();
        twice.extend_from_slice(&data);
        assert_eq!(inflated(&both).unwrap(), twice);
    }

    #[test]
    fn damaged_streams_are_refused() {
        let data = sample(2 * BLOCK + 5);
        let gz = compressed(&data);
        let second = member_len(&gz).unwrap();

        for (what, bytes) in [
            ("cut short", gz[..gz.len() - 3].to_vec()),
            ("a flipped byte", {
                let mut b = gz.clone();
                b[second + 300] ^= 0x55;
                b
            }),
            ("trailing garbage", {
                let mut b = gz.clone();
                b.extend_from_slice(b"not gzip");
                b
            }),
            ("nothing", Vec::new()),
        ] {
            assert!(inflated(&bytes).is_err(), "{what}");
        }
    }

    #[test]
    fn a_stated_length_that_does_not_hold_up_is_read_as_a_stream() {
        // another tool may put its own 4 bytes under the same subfield ID: the stream is
        // still valid gzip (the extra field is opaque to it) and must be read right
        let data = sample(3 * BLOCK + 5);
        let gz = compressed(&data);
        let first = member_len(&gz).unwrap();
        let second = first + member_len(&gz[first..]).unwrap();
        for (at, stated) in [
            (0, u32::MAX),
            (0, 3),
            (0, first as u32 - 1),
            (0, first as u32 + 100),
            (first, (second - first) as u32 + 1),
            (second, 0),
        ] {
            let mut odd = gz.clone();
            odd[at + 16..at + 20].copy_from_slice(&stated.to_le_bytes());
            assert!(
                inflated(&odd).is_ok_and(|out| out == data),
                "member at {at} stating {stated}"
            );
        }
    }
}
