//! Compression of layer and ADD archives, detected by magic bytes (oci-image.md §9.6).

use std::io::{BufRead, BufReader, Read};

use crate::error::ExecutorError;

/// The compressions an archive may have here: those ADD extracts (dockerfile.md §8.8).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// Plain bytes.
    None,
    /// gzip (`1F 8B 08`).
    Gzip,
    /// bzip2 (`BZh`).
    Bzip2,
    /// xz (`FD 37 7A 58 5A 00`).
    Xz,
}

/// What the first bytes of a stream say about it.
enum Detected {
    Known(Compression),
    /// A compression recognised but not read here, by name.
    Unsupported(&'static str),
}

fn detect(head: &[u8]) -> Detected {
    if head.starts_with(&[0x1f, 0x8b, 0x08]) {
        Detected::Known(Compression::Gzip)
    } else if head.starts_with(b"BZh") {
        Detected::Known(Compression::Bzip2)
    } else if head.starts_with(&[0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]) {
        Detected::Known(Compression::Xz)
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Detected::Unsupported("zstd")
    } else {
        Detected::Known(Compression::None)
    }
}

/// `reader` decompressed when it starts with a gzip, bzip2 or xz header (concatenated
/// members or streams read as one), as is otherwise; zstd is refused with a message naming
/// it. Returns the compression found with the reader.
pub fn decompressing<R: Read + Send + 'static>(
    reader: R,
) -> Result<(Compression, Box<dyn Read + Send>), ExecutorError> {
    let mut buffered = BufReader::with_capacity(256 * 1024, reader);
    let head = buffered
        .fill_buf()
        .map_err(|e| ExecutorError::Internal(format!("reading a layer: {e}")))?;
    let compression = match detect(head) {
        Detected::Known(c) => c,
        Detected::Unsupported(kind) => {
            return Err(ExecutorError::InvalidArgument(format!(
                "{kind}-compressed archives are not supported here"
            )));
        }
    };
    let reader: Box<dyn Read + Send> = match compression {
        Compression::None => Box::new(buffered),
        Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(buffered)),
        Compression::Bzip2 => Box::new(bzip2::bufread::MultiBzDecoder::new(buffered)),
        Compression::Xz => Box::new(lzma_rust2::XzReader::new(buffered, true)),
    };
    Ok((compression, reader))
}

/// [`decompressing`] without the compression's name.
pub fn decompressed<R: Read + Send + 'static>(
    reader: R,
) -> Result<Box<dyn Read + Send>, ExecutorError> {
    decompressing(reader).map(|(_, r)| r)
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn read_all(bytes: Vec<u8>) -> Vec<u8> {
        let mut out = Vec::new();
        decompressed(std::io::Cursor::new(bytes))
            .unwrap()
            .read_to_end(&mut out)
            .unwrap();
        out
    }

    #[test]
    fn gzip_bzip2_and_xz_are_detected_and_plain_passes_through() {
        let plain = b"hello ".repeat(1000);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&plain).unwrap();
        let mut bz = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::fast());
        bz.write_all(&plain).unwrap();
        let mut xz =
            lzma_rust2::XzWriter::new(Vec::new(), lzma_rust2::XzOptions::with_preset(1)).unwrap();
        xz.write_all(&plain).unwrap();
        for (bytes, kind) in [
            (gz.finish().unwrap(), Compression::Gzip),
            (bz.finish().unwrap(), Compression::Bzip2),
            (xz.finish().unwrap(), Compression::Xz),
            (plain.clone(), Compression::None),
        ] {
            let (found, _) = decompressing(std::io::Cursor::new(bytes.clone())).unwrap();
            assert_eq!(found, kind);
            assert_eq!(read_all(bytes), plain, "{kind:?}");
        }
        let err = decompressed(std::io::Cursor::new(vec![0x28, 0xb5, 0x2f, 0xfd, 0]))
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("zstd"), "{err}");
    }
}
