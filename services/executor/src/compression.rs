//! Compression of layer and ADD archives, detected by magic bytes (oci-image.md §9.6).

use std::io::{BufRead, BufReader, Read};

use crate::error::ExecutorError;

/// `reader` decompressed when it starts with a gzip header, as is otherwise. zstd, bzip2
/// and xz are refused with a message naming them.
pub fn decompressed<R: Read + Send + 'static>(
    reader: R,
) -> Result<Box<dyn Read + Send>, ExecutorError> {
    let mut buffered = BufReader::with_capacity(256 * 1024, reader);
    let head = buffered
        .fill_buf()
        .map_err(|e| ExecutorError::Internal(format!("reading a layer: {e}")))?
        .to_vec();
    if head.starts_with(&[0x1f, 0x8b, 0x08]) {
        return Ok(Box::new(flate2::read::MultiGzDecoder::new(buffered)));
    }
    let unsupported = if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Some("zstd")
    } else if head.starts_with(b"BZh") {
        Some("bzip2")
    } else if head.starts_with(&[0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]) {
        Some("xz")
    } else {
        None
    };
    if let Some(kind) = unsupported {
        return Err(ExecutorError::InvalidArgument(format!(
            "{kind}-compressed archives are not supported here"
        )));
    }
    Ok(Box::new(buffered))
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    #[test]
    fn gzip_is_detected_and_plain_passes_through() {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(b"hello").unwrap();
        let gz = enc.finish().unwrap();
        let mut out = String::new();
        decompressed(std::io::Cursor::new(gz))
            .unwrap()
            .read_to_string(&mut out)
            .unwrap();
        assert_eq!(out, "hello");
        let mut out = String::new();
        decompressed(std::io::Cursor::new(b"plain".to_vec()))
            .unwrap()
            .read_to_string(&mut out)
            .unwrap();
        assert_eq!(out, "plain");
        assert!(decompressed(std::io::Cursor::new(b"BZh91AY".to_vec())).is_err());
    }
}
