//! PAX extended headers (`x` entries, POSIX.1-2001) for layer tars: the one writer strata's
//! layer producers share (the executor's changesets, `import`'s normalised rootfs), so both
//! write the same bytes for the same entry.
//!
//! A header carries what does not fit the ustar fields (long names and link targets, large
//! ids and sizes, xattrs as `SCHILY.xattr.*`). Records are sorted by key and the entry is
//! named as Go's `archive/tar` names it, `<dir>/PaxHeaders.0/<base>` cut to 100 bytes, with
//! mode 0644 and mtime 0, so the output does not depend on the order records were found in.

use tar::{EntryType, Header};

/// One record: key and value (values are bytes: names and xattrs need not be UTF-8).
pub type PaxRecord = (String, Vec<u8>);

/// The header and the (unpadded) data of a PAX extended header for the entry `name`.
/// `records` is sorted in place.
pub fn pax_entry(name: &str, records: &mut [PaxRecord]) -> (Header, Vec<u8>) {
    records.sort_by(|a, b| a.0.cmp(&b.0));
    let mut data = Vec::new();
    for (k, v) in records.iter() {
        // "<len> <key>=<value>\n", where <len> counts its own digits
        let body_len = 1 + k.len() + 1 + v.len() + 1;
        let mut len = body_len + 1;
        while len != body_len + len.to_string().len() {
            len = body_len + len.to_string().len();
        }
        data.extend_from_slice(format!("{len} {k}=").as_bytes());
        data.extend_from_slice(v);
        data.push(b'\n');
    }
    let mut header = Header::new_ustar();
    header.set_entry_type(EntryType::XHeader);
    let pax_name = header_name(name);
    let field = &mut header.as_old_mut().name;
    field[..pax_name.len()].copy_from_slice(pax_name.as_bytes());
    header.set_mode(0o644);
    header.set_mtime(0);
    header.set_size(data.len() as u64);
    header.set_cksum();
    (header, data)
}

/// `<dir>/PaxHeaders.0/<base>` for `name`, cut to at most 100 bytes on a character boundary.
fn header_name(name: &str) -> String {
    let trimmed = name.trim_end_matches('/');
    let (dir, base) = trimmed.rsplit_once('/').unwrap_or(("", trimmed));
    let mut pax_name = if dir.is_empty() {
        format!("PaxHeaders.0/{base}")
    } else {
        format!("{dir}/PaxHeaders.0/{base}")
    };
    let mut cut = pax_name.len().min(100);
    while !pax_name.is_char_boundary(cut) {
        cut -= 1;
    }
    pax_name.truncate(cut);
    pax_name
}

#[cfg(test)]
mod tests {
    use super::*;

    fn records(header: &Header, data: &[u8]) -> Vec<(String, Vec<u8>)> {
        // read it back with the tar crate, as any reader would
        let mut tar = Vec::new();
        tar.extend_from_slice(header.as_bytes());
        tar.extend_from_slice(data);
        tar.resize(tar.len().div_ceil(512) * 512, 0);
        let mut file = Header::new_ustar();
        file.set_path("x").unwrap();
        file.set_size(0);
        file.set_cksum();
        tar.extend_from_slice(file.as_bytes());
        tar.extend_from_slice(&[0; 1024]);
        let mut archive = tar::Archive::new(&tar[..]);
        let mut entries = archive.entries().unwrap();
        let mut entry = entries.next().unwrap().unwrap();
        entry
            .pax_extensions()
            .unwrap()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (e.key().unwrap().to_owned(), e.value_bytes().to_vec())
            })
            .collect()
    }

    #[test]
    fn records_are_sorted_and_their_lengths_count_their_own_digits() {
        let long = "d/".repeat(60) + "file";
        let mut recs = vec![
            ("path".to_string(), long.clone().into_bytes()),
            ("SCHILY.xattr.user.k".to_string(), vec![0xff, 0, 1]),
            ("uid".to_string(), b"3000000".to_vec()),
        ];
        let (header, data) = pax_entry(&long, &mut recs);
        assert_eq!(header.entry_type(), EntryType::XHeader);
        assert_eq!(header.size().unwrap(), data.len() as u64);
        // "15 uid=3000000\n" is 15 bytes, the length field's own two digits included
        assert!(
            data.ends_with(b"15 uid=3000000\n"),
            "{:?}",
            String::from_utf8_lossy(&data)
        );
        let back = records(&header, &data);
        let keys: Vec<&str> = back.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["SCHILY.xattr.user.k", "path", "uid"]);
        assert_eq!(back[0].1, vec![0xff, 0, 1]);
        assert_eq!(back[1].1, long.into_bytes());
    }

    #[test]
    fn the_entry_is_named_as_go_names_it_and_cut_on_a_character_boundary() {
        assert_eq!(header_name("etc/passwd"), "etc/PaxHeaders.0/passwd");
        assert_eq!(header_name("top/"), "PaxHeaders.0/top");
        let name = format!("{}/{}", "a".repeat(80), "é".repeat(20));
        let cut = header_name(&name);
        assert!(cut.len() <= 100 && cut.len() >= 99, "{}", cut.len());
        assert!(cut.starts_with(&"a".repeat(80)));
        let (header, _) = pax_entry(&name, &mut []);
        assert_eq!(header.path_bytes().as_ref(), cut.as_bytes());
    }
}
