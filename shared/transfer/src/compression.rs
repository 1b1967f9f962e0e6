//! Compression detection by magic bytes (oci-image.md §9.6) and transparent decompression
//! of all four kinds it names.

use std::io::{BufRead, BufReader, Read};

/// A stream's compression.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// Plain bytes.
    None,
    /// gzip (`1F 8B 08`).
    Gzip,
    /// zstd (`28 B5 2F FD`, or a skippable frame).
    Zstd,
    /// bzip2 (`BZh`).
    Bzip2,
    /// xz (`FD 37 7A 58 5A 00`).
    Xz,
}

impl Compression {
    /// Detects the compression from the first bytes of a stream (8 are enough).
    pub fn detect(prefix: &[u8]) -> Self {
        if prefix.starts_with(&[0x1f, 0x8b, 0x08]) {
            Self::Gzip
        } else if prefix.starts_with(&[0x28, 0xb5, 0x2f, 0xfd])
            || (prefix.len() >= 8
                && u32::from_le_bytes([prefix[0], prefix[1], prefix[2], prefix[3]]) & 0xFFFF_FFF0
                    == 0x184D_2A50)
        {
            Self::Zstd
        } else if prefix.starts_with(b"BZh") {
            Self::Bzip2
        } else if prefix.starts_with(&[0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]) {
            Self::Xz
        } else {
            Self::None
        }
    }

    /// The name users know.
    pub fn name(self) -> &'static str {
        match self {
            Self::None => "uncompressed",
            Self::Gzip => "gzip",
            Self::Zstd => "zstd",
            Self::Bzip2 => "bzip2",
            Self::Xz => "xz",
        }
    }
}

/// Peeks at the stream and wraps it in the matching decoder: gzip, zstd, bzip2, xz or none
/// (docker-archive.md §4: `docker load` reads all four). Concatenated gzip members, bzip2
/// streams and xz streams are read as one, as their command-line tools do.
pub fn decompressing_reader<'a, R: Read + 'a>(
    inner: R,
) -> std::io::Result<(Compression, Box<dyn Read + 'a>)> {
    let mut buffered = BufReader::with_capacity(1 << 20, inner);
    let compression = {
        // fill_buf may return fewer bytes than asked; a short first read is fine for all
        // magic numbers but zstd's skippable frames, which need 8.
        let prefix = buffered.fill_buf()?;
        Compression::detect(prefix)
    };
    let reader: Box<dyn Read + 'a> = match compression {
        Compression::None => Box::new(buffered),
        Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(buffered)),
        Compression::Zstd => Box::new(zstd::stream::read::Decoder::with_buffer(buffered)?),
        Compression::Bzip2 => Box::new(bzip2::bufread::MultiBzDecoder::new(buffered)),
        Compression::Xz => Box::new(lzma_rust2::XzReader::new(buffered, true)),
    };
    Ok((compression, reader))
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn xz(plain: &[u8]) -> Vec<u8> {
        let mut w =
            lzma_rust2::XzWriter::new(Vec::new(), lzma_rust2::XzOptions::with_preset(1)).unwrap();
        w.write_all(plain).unwrap();
        w.finish().unwrap()
    }

    fn bzip2(plain: &[u8]) -> Vec<u8> {
        let mut w = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::fast());
        w.write_all(plain).unwrap();
        w.finish().unwrap()
    }

    #[test]
    fn detects_and_decodes() {
        let plain = b"hello world".repeat(100);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&plain).unwrap();
        let gz = gz.finish().unwrap();
        let zs = zstd::encode_all(&plain[..], 1).unwrap();
        for (bytes, kind) in [
            (plain.clone(), Compression::None),
            (gz, Compression::Gzip),
            (zs, Compression::Zstd),
            (bzip2(&plain), Compression::Bzip2),
            (xz(&plain), Compression::Xz),
        ] {
            let (c, mut r) = decompressing_reader(&bytes[..]).unwrap();
            assert_eq!(c, kind);
            let mut out = Vec::new();
            r.read_to_end(&mut out).unwrap();
            assert_eq!(out, plain, "{kind:?}");
        }
        assert_eq!(Compression::detect(b"BZh91AY"), Compression::Bzip2);
        assert_eq!(
            Compression::detect(&[0x50, 0x2a, 0x4d, 0x18, 0, 0, 0, 0]),
            Compression::Zstd
        );
    }

    #[test]
    fn concatenated_streams_read_as_one_and_corruption_is_an_error() {
        for compress in [bzip2 as fn(&[u8]) -> Vec<u8>, xz] {
            let mut two = compress(b"first ");
            two.extend(compress(b"second"));
            let mut out = String::new();
            decompressing_reader(&two[..])
                .unwrap()
                .1
                .read_to_string(&mut out)
                .unwrap();
            assert_eq!(out, "first second");

            let mut bad = compress(&b"some bytes to damage".repeat(50));
            let mid = bad.len() / 2;
            bad[mid] ^= 0xff;
            let mut sink = Vec::new();
            assert!(
                decompressing_reader(&bad[..])
                    .unwrap()
                    .1
                    .read_to_end(&mut sink)
                    .is_err()
            );
        }
    }
}
