//! Bounds on what a blob (or lease) carries beside its content: media type and labels. They
//! are kept in every record, returned by every stat and listing and logged at commit, so
//! they are small by contract: a media type is at most [`MAX_MEDIA_TYPE`] bytes (RFC 6838
//! allows 127 characters for each of type and subtype), and labels are bounded in number,
//! key and value size, and in total (containerd bounds each label at 4 KiB the same way).

use std::collections::BTreeMap;

use crate::error::{LayerStoreError, Result};

/// Longest media type, in bytes.
pub const MAX_MEDIA_TYPE: usize = 255;
/// Most labels on one blob or lease.
pub const MAX_LABELS: usize = 64;
/// Longest label key, in bytes.
pub const MAX_LABEL_KEY: usize = 255;
/// Longest label value, in bytes.
pub const MAX_LABEL_VALUE: usize = 4096;
/// Most bytes of all label keys and values together.
pub const MAX_LABELS_TOTAL: usize = 16 << 10;

/// Checks a media type (`field` names it in the error, which never repeats the value).
pub fn check_media_type(field: &'static str, media_type: &str) -> Result<()> {
    if media_type.len() > MAX_MEDIA_TYPE {
        return Err(LayerStoreError::InvalidField {
            field,
            reason: format!(
                "{} bytes long; a media type is at most {MAX_MEDIA_TYPE} bytes",
                media_type.len()
            ),
        });
    }
    if media_type.chars().any(char::is_control) {
        return Err(LayerStoreError::InvalidField {
            field,
            reason: "a media type holds no control characters".into(),
        });
    }
    Ok(())
}

/// Checks labels (`field` names them in the error, which names an offending key only when
/// the key itself is within bounds).
pub fn check_labels(field: &'static str, labels: &BTreeMap<String, String>) -> Result<()> {
    let invalid = |reason: String| LayerStoreError::InvalidField { field, reason };
    if labels.len() > MAX_LABELS {
        return Err(invalid(format!(
            "{} labels; at most {MAX_LABELS}",
            labels.len()
        )));
    }
    let mut total = 0;
    for (key, value) in labels {
        if key.is_empty() || key.len() > MAX_LABEL_KEY {
            return Err(invalid(format!(
                "a label key of {} bytes; a key is 1 to {MAX_LABEL_KEY} bytes",
                key.len()
            )));
        }
        if key.chars().any(char::is_control) {
            return Err(invalid("a label key with control characters".to_string()));
        }
        if value.len() > MAX_LABEL_VALUE {
            return Err(invalid(format!(
                "label {key:?} has a value of {} bytes; at most {MAX_LABEL_VALUE}",
                value.len()
            )));
        }
        total += key.len() + value.len();
    }
    if total > MAX_LABELS_TOTAL {
        return Err(invalid(format!(
            "labels of {total} bytes in all; at most {MAX_LABELS_TOTAL}"
        )));
    }
    Ok(())
}

/// Whether a stored record's metadata is within today's bounds (a record written before
/// they existed may not be).
pub fn within_bounds(media_type: &str, labels: &BTreeMap<String, String>) -> bool {
    check_media_type("media_type", media_type).is_ok() && check_labels("labels", labels).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_are_enforced_without_echoing_the_value() {
        assert!(check_media_type("m", "application/vnd.oci.image.layer.v1.tar").is_ok());
        let long = "a".repeat(MAX_MEDIA_TYPE + 1);
        let err = check_media_type("start.media_type", &long).unwrap_err();
        assert!(!err.to_string().contains(&long[..64]), "{err}");
        assert!(err.to_string().contains("at most 255 bytes"), "{err}");
        assert!(check_media_type("m", "a\nb").is_err());

        let ok: BTreeMap<String, String> = [("strata.subject".into(), "x".repeat(71))].into();
        assert!(check_labels("l", &ok).is_ok());
        let many: BTreeMap<String, String> = (0..=MAX_LABELS)
            .map(|i| (format!("k{i}"), String::new()))
            .collect();
        assert!(check_labels("l", &many).is_err());
        let big_value: BTreeMap<String, String> =
            [("k".into(), "v".repeat(MAX_LABEL_VALUE + 1))].into();
        assert!(check_labels("l", &big_value).is_err());
        let big_key: BTreeMap<String, String> =
            [("k".repeat(MAX_LABEL_KEY + 1), "v".into())].into();
        let err = check_labels("l", &big_key).unwrap_err();
        assert!(!err.to_string().contains(&"k".repeat(64)), "{err}");
        let total: BTreeMap<String, String> = (0..5)
            .map(|i| (format!("k{i}"), "v".repeat(MAX_LABEL_VALUE)))
            .collect();
        assert!(check_labels("l", &total).is_err());
        assert!(check_labels("l", &[(String::new(), "v".into())].into()).is_err());
    }
}
