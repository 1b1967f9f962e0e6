//! Compression of layer and ADD archives, detected by magic bytes (oci-image.md §9.6).

use std::io::{BufRead, BufReader, Read};

use crate::error::ExecutorError;

pub use strata_transfer::compression::Compression;

/// `reader` decompressed when it starts with a gzip, bzip2 or xz header (concatenated
/// members or streams read as one), as is otherwise; detected as strata-transfer detects
/// what `load` and `import` read. zstd is refused here with a message naming it (ADD
/// extracts only what dockerfile.md §8.8 lists). Returns the compression found.
pub fn decompressing<R: Read + Send + 'static>(
    reader: R,
) -> Result<(Compression, Box<dyn Read + Send>), ExecutorError> {
    let mut buffered = BufReader::with_capacity(256 * 1024, reader);
    let head = buffered
        .fill_buf()
        .map_err(|e| ExecutorError::Internal(format!("reading a layer: {e}")))?;
    let compression = Compression::detect(head);
    let reader: Box<dyn Read + Send> = match compression {
        Compression::None => Box::new(buffered),
        Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(buffered)),
        Compression::Bzip2 => Box::new(bzip2::bufread::MultiBzDecoder::new(buffered)),
        Compression::Xz => Box::new(lzma_rust2::XzReader::new(buffered, true)),
        Compression::Zstd => {
            return Err(ExecutorError::InvalidArgument(
                "zstd-compressed archives are not supported here".into(),
            ));
        }
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
