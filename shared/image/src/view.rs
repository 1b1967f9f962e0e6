//! What `docker history` and `docker inspect` print, computed from image documents.
//!
//! [`history_rows`] is the daemon's walk (docker-archive.md §6.1) and [`HistoryView`] the CLI's
//! rendering (§6.2: Go `text/tabwriter` columns, `HumanDuration`, `%.3g` decimal sizes, 45
//! column `CREATED BY` truncation). [`InspectView`] is the API object of §5 with its keys in
//! Docker's order; [`go_json_pretty`] prints it the way the Docker CLI re-indents it.

use serde::Serialize;

use crate::{ContainerConfig, ImageConfig, ImageError, time::Timestamp};

/// The ID Docker prints for rows that have no local image.
pub const MISSING: &str = "<missing>";

/// One row of `docker history`, before rendering.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryRow {
    /// `sha256:…` on the top row, [`MISSING`] elsewhere.
    pub id: String,
    /// Unix seconds; 0 when the entry has no time.
    pub created: i64,
    /// The step's command.
    pub created_by: String,
    /// The step's comment.
    pub comment: String,
    /// Uncompressed size of the layer the step made; 0 for empty-layer steps.
    pub size: i64,
}

/// Walks `config.history` pairing non-empty entries with `layer_sizes` (one per diff_id,
/// base first), newest first; the top row carries `image_id`.
pub fn history_rows(
    config: &ImageConfig,
    image_id: &str,
    layer_sizes: &[i64],
) -> Result<Vec<HistoryRow>, ImageError> {
    let mut layer = 0usize;
    let mut rows = Vec::with_capacity(config.history.len());
    for h in &config.history {
        let size = if h.empty_layer {
            0
        } else {
            let Some(size) = layer_sizes.get(layer) else {
                return Err(ImageError::Invalid {
                    what: "image config",
                    reason: "too many non-empty layers in History section".into(),
                });
            };
            layer += 1;
            *size
        };
        rows.push(HistoryRow {
            id: MISSING.to_string(),
            created: h
                .created
                .as_deref()
                .and_then(Timestamp::parse)
                .map_or(0, |t| t.seconds),
            created_by: h.created_by.clone().unwrap_or_default(),
            comment: h.comment.clone().unwrap_or_default(),
            size,
        });
    }
    rows.reverse();
    if let Some(top) = rows.first_mut() {
        top.id = image_id.to_string();
    }
    Ok(rows)
}

/// How `docker history` renders rows.
#[derive(Debug, Clone, Copy)]
pub struct HistoryView {
    /// `-H` (default true): human sizes and ages.
    pub human: bool,
    /// `--no-trunc`.
    pub no_trunc: bool,
    /// The time ages are measured from.
    pub now: Timestamp,
}

impl HistoryView {
    fn id(&self, row: &HistoryRow) -> String {
        if self.no_trunc {
            row.id.clone()
        } else {
            truncate_id(&row.id)
        }
    }

    fn created_at(&self, row: &HistoryRow) -> String {
        Timestamp::from_unix(row.created).to_rfc3339_seconds()
    }

    fn created_since(&self, row: &HistoryRow) -> String {
        if !self.human {
            return self.created_at(row);
        }
        // 2000-01-01T00:00:00Z
        if row.created <= 946_684_800 {
            return "N/A".into();
        }
        format!("{} ago", human_duration(self.now.seconds - row.created))
    }

    fn created_by(&self, row: &HistoryRow) -> String {
        let s = row.created_by.replace('\t', " ");
        if self.no_trunc { s } else { ellipsis(&s, 45) }
    }

    fn size(&self, row: &HistoryRow) -> String {
        if self.human {
            human_size(row.size)
        } else {
            row.size.to_string()
        }
    }

    /// The default table, header included.
    pub fn table(&self, rows: &[HistoryRow]) -> String {
        let created = if self.human { "CREATED" } else { "CREATED AT" };
        let mut cells = vec![vec![
            "IMAGE".to_string(),
            created.to_string(),
            "CREATED BY".into(),
            "SIZE".into(),
            "COMMENT".into(),
        ]];
        for r in rows {
            cells.push(vec![
                self.id(r),
                self.created_since(r),
                self.created_by(r),
                self.size(r),
                r.comment.clone(),
            ]);
        }
        tabwriter(&cells)
    }

    /// `-q`: IDs only.
    pub fn quiet(&self, rows: &[HistoryRow]) -> String {
        rows.iter().map(|r| format!("{}\n", self.id(r))).collect()
    }

    /// `--format json`: one object per row and line, keys sorted as Go's map encoding.
    pub fn json_lines(&self, rows: &[HistoryRow]) -> String {
        #[derive(Serialize)]
        #[serde(rename_all = "PascalCase")]
        struct Row {
            comment: String,
            created_at: String,
            created_by: String,
            created_since: String,
            #[serde(rename = "ID")]
            id: String,
            size: String,
        }
        let mut out = String::new();
        for r in rows {
            let row = Row {
                comment: r.comment.clone(),
                created_at: self.created_at(r),
                created_by: self.created_by(r),
                created_since: self.created_since(r),
                id: self.id(r),
                size: self.size(r),
            };
            out.push_str(&go_escape(&serde_json::to_string(&row).unwrap_or_default()));
            out.push('\n');
        }
        out
    }
}

/// Docker's `stringid.TruncateID`: drop through the first `:`, keep 12 characters.
pub fn truncate_id(id: &str) -> String {
    let id = id.split_once(':').map_or(id, |(_, rest)| rest);
    id.chars().take(12).collect()
}

/// go-units `HumanDuration` of a number of seconds.
pub fn human_duration(seconds: i64) -> String {
    let s = seconds;
    if s < 1 {
        return "Less than a second".into();
    }
    if s == 1 {
        return "1 second".into();
    }
    if s < 60 {
        return format!("{s} seconds");
    }
    let minutes = s / 60;
    if minutes == 1 {
        return "About a minute".into();
    }
    if minutes < 60 {
        return format!("{minutes} minutes");
    }
    let hours = (s as f64 / 3600.0 + 0.5) as i64;
    if hours == 1 {
        return "About an hour".into();
    }
    if hours < 48 {
        return format!("{hours} hours");
    }
    if hours < 24 * 7 * 2 {
        return format!("{} days", hours / 24);
    }
    if hours < 24 * 30 * 2 {
        return format!("{} weeks", hours / 24 / 7);
    }
    if hours < 24 * 365 * 2 {
        return format!("{} months", hours / 24 / 30);
    }
    format!("{} years", s / 3600 / 24 / 365)
}

/// go-units `HumanSizeWithPrecision(size, 3)`: decimal units, Go `%.3g`.
pub fn human_size(size: i64) -> String {
    const UNITS: [&str; 9] = ["B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB"];
    let mut v = size as f64;
    let mut i = 0;
    while v >= 1000.0 && i < UNITS.len() - 1 {
        v /= 1000.0;
        i += 1;
    }
    format!("{}{}", go_format_g(v, 3), UNITS[i])
}

/// Go's `%.{precision}g` for a finite float.
fn go_format_g(v: f64, precision: usize) -> String {
    if v == 0.0 {
        return "0".into();
    }
    // Round to `precision` significant digits first: the exponent after rounding decides
    // between the two notations, as in Go.
    let sci = format!("{:.*e}", precision - 1, v);
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    if exp < -4 || exp >= precision as i32 {
        let m = trim_fraction(mantissa);
        let sign = if exp < 0 { '-' } else { '+' };
        return format!("{m}e{sign}{:02}", exp.abs());
    }
    let decimals = (precision as i32 - 1 - exp).max(0) as usize;
    trim_fraction(&format!("{v:.decimals$}"))
}

fn trim_fraction(s: &str) -> String {
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s.to_string()
    }
}

/// Display width of a character: 2 for East Asian wide/fullwidth ranges, else 1.
fn char_width(c: char) -> usize {
    let c = c as u32;
    let wide = matches!(c,
        0x1100..=0x115F | 0x2E80..=0x303E | 0x3041..=0x33FF | 0x3400..=0x4DBF | 0x4E00..=0x9FFF
        | 0xA000..=0xA4CF | 0xAC00..=0xD7A3 | 0xF900..=0xFAFF | 0xFE30..=0xFE4F | 0xFF00..=0xFF60
        | 0xFFE0..=0xFFE6 | 0x1F300..=0x1F64F | 0x1F900..=0x1F9FF | 0x20000..=0x3FFFD);
    if wide { 2 } else { 1 }
}

/// docker/cli `formatter.Ellipsis`: cut to `max` display columns, ending with `…`.
pub fn ellipsis(s: &str, max: usize) -> String {
    let width: usize = s.chars().map(char_width).sum();
    if width <= max {
        return s.to_string();
    }
    let mut out = String::new();
    let mut w = 0;
    for c in s.chars() {
        let cw = char_width(c);
        if w + cw > max - 1 {
            break;
        }
        w += cw;
        out.push(c);
    }
    out.push('…');
    out
}

/// Go `text/tabwriter` with minwidth 10, tabwidth 1, padding 3, padchar ' ', no flags, for
/// rows of equal length: every column but the last padded to its widest cell + 3 (>= 10).
pub fn tabwriter(rows: &[Vec<String>]) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let mut widths = vec![0usize; columns];
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            out.push_str(cell);
            if i + 1 < row.len() {
                let width = (widths[i] + 3).max(10);
                out.extend(std::iter::repeat_n(' ', width - cell.chars().count()));
            }
        }
        out.push('\n');
    }
    out
}

/// Escapes as Go's `encoding/json` does by default: `<`, `>`, `&`, U+2028 and U+2029. Safe
/// on serialised JSON, where those characters only occur inside strings.
pub fn go_escape(json: &str) -> String {
    let mut out = String::with_capacity(json.len());
    for c in json.chars() {
        match c {
            '<' => out.push_str("\\u003c"),
            '>' => out.push_str("\\u003e"),
            '&' => out.push_str("\\u0026"),
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            c => out.push(c),
        }
    }
    out
}

/// Serialises as the Docker CLI prints API objects: 4-space indentation, Go escaping, a
/// trailing newline.
pub fn go_json_pretty<T: Serialize>(value: &T) -> String {
    let mut buf = Vec::new();
    let fmt = serde_json::ser::PrettyFormatter::with_indent(b"    ");
    let mut ser = serde_json::Serializer::with_formatter(&mut buf, fmt);
    // serialising plain data structures into memory cannot fail
    let _ = value.serialize(&mut ser);
    let mut s = go_escape(&String::from_utf8_lossy(&buf));
    s.push('\n');
    s
}

/// `docker image inspect`'s object, keys in Docker's order (API 1.50 shape: legacy fields
/// and empty optional strings omitted).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct InspectView {
    /// `sha256:<config digest hex>`.
    pub id: String,
    /// Familiar `name:tag` of every local tag.
    pub repo_tags: Vec<String>,
    /// `name@sha256:<manifest digest>` for every registry the image came from or went to.
    pub repo_digests: Vec<String>,
    /// Config `comment`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    /// Config `created`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    /// Config `author`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    /// Config `config`.
    pub config: ContainerConfig,
    /// GOARCH.
    pub architecture: String,
    /// CPU variant.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    /// GOOS.
    pub os: String,
    /// OS version.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub os_version: Option<String>,
    /// Sum of the uncompressed layer sizes.
    pub size: i64,
    /// `rootfs`.
    #[serde(rename = "RootFS")]
    pub root_fs: InspectRootFs,
    /// Daemon-local metadata.
    pub metadata: InspectMetadata,
}

/// `RootFS` of inspect.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct InspectRootFs {
    /// Always `layers`.
    #[serde(rename = "Type")]
    pub kind: String,
    /// The diff_ids.
    pub layers: Vec<String>,
}

/// `Metadata` of inspect.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct InspectMetadata {
    /// When a tag last moved to this image; Go's zero time when never.
    pub last_tag_time: String,
}

impl InspectView {
    /// The view of an image from its config, with what only the store knows passed in.
    pub fn new(
        config: &ImageConfig,
        image_id: &str,
        repo_tags: Vec<String>,
        repo_digests: Vec<String>,
        size: i64,
        last_tag_time: Option<Timestamp>,
    ) -> Self {
        let non_empty = |s: &Option<String>| s.clone().filter(|s| !s.is_empty());
        Self {
            id: image_id.to_string(),
            repo_tags,
            repo_digests,
            comment: non_empty(&config.comment),
            created: config
                .created
                .as_deref()
                .map(|c| Timestamp::parse(c).map_or_else(|| c.to_string(), |t| t.to_string())),
            author: non_empty(&config.author),
            config: config.config.clone(),
            architecture: config.architecture.clone(),
            variant: non_empty(&config.variant),
            os: config.os.clone(),
            os_version: non_empty(&config.os_version),
            size,
            root_fs: InspectRootFs {
                kind: config.rootfs.kind.clone(),
                layers: config.rootfs.diff_ids.clone(),
            },
            metadata: InspectMetadata {
                last_tag_time: last_tag_time
                    .map_or_else(|| "0001-01-01T00:00:00Z".to_string(), |t| t.to_string()),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::History;

    fn example_config() -> ImageConfig {
        // oci-image.md §11
        ImageConfig::parse(br#"{"architecture":"amd64","os":"linux","created":"2024-01-01T00:00:00Z","config":{"Env":["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],"Cmd":["/bin/sh"],"WorkingDir":"/"},"rootfs":{"type":"layers","diff_ids":["sha256:5f70bf18a086007016e948b04aed3b82103a36bea41755b6cddfaf10ace3c6ef"]},"history":[{"created":"2024-01-01T00:00:00Z","created_by":"COPY . / # buildkit","comment":"buildkit.dockerfile.v0"},{"created":"2024-01-01T00:00:00Z","created_by":"CMD [\"/bin/sh\"]","comment":"buildkit.dockerfile.v0","empty_layer":true}]}"#).unwrap()
    }

    const ID: &str = "sha256:71fad6ed8429c9b422d6e0a23da1f62929dda8286c71a6ef50de483378597203";

    #[test]
    fn golden_tables_of_docker_cli() {
        // docker/cli formatter_history golden: human
        let rows = vec![HistoryRow {
            id: "sha256:123456789012345".into(),
            created: 1_700_000_000,
            created_by: String::new(),
            comment: "none".into(),
            size: 0,
        }];
        let view = HistoryView {
            human: true,
            no_trunc: false,
            now: Timestamp::from_unix(1_700_000_000),
        };
        assert_eq!(
            view.table(&rows),
            "IMAGE          CREATED                  CREATED BY   SIZE      COMMENT\n\
             123456789012   Less than a second ago                0B        none\n"
        );
        // non-human
        let rows = vec![HistoryRow {
            id: "abcdef".into(),
            created: Timestamp::parse("2017-01-01T12:00:03Z").unwrap().seconds,
            created_by: "rose".into(),
            comment: "new history item!".into(),
            size: 0,
        }];
        let view = HistoryView {
            human: false,
            no_trunc: false,
            now: Timestamp::now(),
        };
        assert_eq!(
            view.table(&rows),
            "IMAGE     CREATED AT             CREATED BY   SIZE      COMMENT\n\
             abcdef    2017-01-01T12:00:03Z   rose         0         new history item!\n"
        );
    }

    #[test]
    fn illustrative_buildkit_table_from_the_spec() {
        let now = Timestamp::parse("2024-03-01T12:00:00Z").unwrap().seconds;
        let mk = |id: &str, ago: i64, by: &str, size: i64| HistoryRow {
            id: id.into(),
            created: now - ago,
            created_by: by.into(),
            comment: "buildkit.dockerfile.v0".into(),
            size,
        };
        let rows = vec![
            mk("sha256:0123456789abcdef", 120, "CMD [\"/app\"]", 0),
            mk(MISSING, 120, "COPY app /app # buildkit", 5_590_000),
            mk(MISSING, 21 * 86400, "CMD [\"/bin/sh\"]", 0),
            mk(
                MISSING,
                21 * 86400,
                "ADD alpine-minirootfs-3.19.1-x86_64.tar.gz / # buildkit",
                7_380_000,
            ),
        ];
        let view = HistoryView {
            human: true,
            no_trunc: false,
            now: Timestamp::from_unix(now),
        };
        let expected = "\
IMAGE          CREATED         CREATED BY                                      SIZE      COMMENT
0123456789ab   2 minutes ago   CMD [\"/app\"]                                    0B        buildkit.dockerfile.v0
<missing>      2 minutes ago   COPY app /app # buildkit                        5.59MB    buildkit.dockerfile.v0
<missing>      3 weeks ago     CMD [\"/bin/sh\"]                                 0B        buildkit.dockerfile.v0
<missing>      3 weeks ago     ADD alpine-minirootfs-3.19.1-x86_64.tar.gz /…   7.38MB    buildkit.dockerfile.v0
";
        assert_eq!(view.table(&rows), expected);
    }

    #[test]
    fn rows_pair_layers_and_mark_missing() {
        let cfg = example_config();
        let rows = history_rows(&cfg, ID, &[1024]).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].id, ID);
        assert_eq!(rows[0].created_by, "CMD [\"/bin/sh\"]");
        assert_eq!(rows[0].size, 0);
        assert_eq!(rows[1].id, MISSING);
        assert_eq!(rows[1].size, 1024);
        assert_eq!(rows[1].created, 1_704_067_200);
        let view = HistoryView {
            human: false,
            no_trunc: true,
            now: Timestamp::now(),
        };
        assert_eq!(
            view.table(&rows),
            format!(
                "IMAGE{pad}CREATED AT             CREATED BY            SIZE      COMMENT\n\
                 {ID}   2024-01-01T00:00:00Z   CMD [\"/bin/sh\"]       0         buildkit.dockerfile.v0\n\
                 <missing>{pad2}2024-01-01T00:00:00Z   COPY . / # buildkit   1024      buildkit.dockerfile.v0\n",
                pad = " ".repeat(71 + 3 - 5),
                pad2 = " ".repeat(71 + 3 - 9),
            )
        );
        let mut bad = cfg.clone();
        bad.history.push(History {
            created_by: Some("RUN x".into()),
            ..Default::default()
        });
        assert!(
            history_rows(&bad, ID, &[1024])
                .unwrap_err()
                .to_string()
                .contains("too many non-empty layers")
        );
    }

    #[test]
    fn json_rows_are_go_encoded() {
        let rows = vec![HistoryRow {
            id: MISSING.into(),
            created: 0,
            created_by: "RUN /bin/sh -c echo a > b && true && false # buildkit".into(),
            comment: "buildkit.dockerfile.v0".into(),
            size: 1_234_567,
        }];
        let view = HistoryView {
            human: true,
            no_trunc: false,
            now: Timestamp::now(),
        };
        assert_eq!(
            view.json_lines(&rows),
            "{\"Comment\":\"buildkit.dockerfile.v0\",\"CreatedAt\":\"1970-01-01T00:00:00Z\",\"CreatedBy\":\"RUN /bin/sh -c echo a \\u003e b \\u0026\\u0026 true \\u0026\\u0026 false #…\",\"CreatedSince\":\"N/A\",\"ID\":\"\\u003cmissing\\u003e\",\"Size\":\"1.23MB\"}\n"
        );
    }

    #[test]
    fn sizes_and_durations_follow_go_units() {
        for (n, s) in [
            (0, "0B"),
            (999, "999B"),
            (1000, "1kB"),
            (1230, "1.23kB"),
            (77_800_000, "77.8MB"),
            (5_590_000, "5.59MB"),
            (123_456_789, "123MB"),
            (999_999, "1e+03kB"),
            (2_000_000_000, "2GB"),
        ] {
            assert_eq!(human_size(n), s, "{n}");
        }
        for (secs, s) in [
            (0, "Less than a second"),
            (1, "1 second"),
            (59, "59 seconds"),
            (60, "About a minute"),
            (3599, "59 minutes"),
            (5399, "About an hour"),
            (5400, "2 hours"),
            (47 * 3600, "47 hours"),
            (48 * 3600, "2 days"),
            (14 * 86400, "2 weeks"),
            (60 * 86400, "2 months"),
            (800 * 86400, "2 years"),
        ] {
            assert_eq!(human_duration(secs), s, "{secs}");
        }
        assert_eq!(ellipsis("日本語日本語", 5), "日本…");
        assert_eq!(truncate_id(MISSING), MISSING);
    }

    #[test]
    fn inspect_keys_are_in_docker_order() {
        let cfg = example_config();
        let view = InspectView::new(&cfg, ID, vec!["example:latest".into()], vec![], 1024, None);
        let out = go_json_pretty(&vec![view]);
        let expected = format!(
            r#"[
    {{
        "Id": "{ID}",
        "RepoTags": [
            "example:latest"
        ],
        "RepoDigests": [],
        "Created": "2024-01-01T00:00:00Z",
        "Config": {{
            "Env": [
                "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
            ],
            "Cmd": [
                "/bin/sh"
            ],
            "WorkingDir": "/"
        }},
        "Architecture": "amd64",
        "Os": "linux",
        "Size": 1024,
        "RootFS": {{
            "Type": "layers",
            "Layers": [
                "sha256:5f70bf18a086007016e948b04aed3b82103a36bea41755b6cddfaf10ace3c6ef"
            ]
        }},
        "Metadata": {{
            "LastTagTime": "0001-01-01T00:00:00Z"
        }}
    }}
]
"#
        );
        assert_eq!(out, expected);
    }
}
