//! History `created_by` strings in BuildKit's form (dockerfile.md §12.1) and RFC 3339 times.

use strata_image::Healthcheck;

/// The history comment BuildKit writes.
pub const COMMENT: &str = "buildkit.dockerfile.v0";

/// Go's `%q` of a string (close enough for Dockerfile text: Rust's escapes of `"`, `\` and
/// control characters match Go's for the printable ASCII cases).
fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Go's `%q` of a `[]string`: `["a" "b"]`.
pub fn go_quoted_list(items: &[String]) -> String {
    format!(
        "[{}]",
        items
            .iter()
            .map(|s| go_quote(s))
            .collect::<Vec<_>>()
            .join(" ")
    )
}

/// Go's `%v` of a `[]string`: `[a b]`.
pub fn go_list(items: &[String]) -> String {
    format!("[{}]", items.join(" "))
}

/// Go's `time.Duration.String()` of nanoseconds.
pub fn go_duration(ns: i64) -> String {
    if ns == 0 {
        return "0s".into();
    }
    let neg = ns < 0;
    let u = ns.unsigned_abs();
    let body = if u < 1_000 {
        format!("{u}ns")
    } else if u < 1_000_000 {
        format!("{}µs", trim_frac(u, 1_000))
    } else if u < 1_000_000_000 {
        format!("{}ms", trim_frac(u, 1_000_000))
    } else {
        let total_secs = u / 1_000_000_000;
        let frac = u % 1_000_000_000;
        let h = total_secs / 3600;
        let m = (total_secs % 3600) / 60;
        let s = total_secs % 60;
        let secs = if frac == 0 {
            format!("{s}s")
        } else {
            let f = format!("{frac:09}");
            format!("{s}.{}s", f.trim_end_matches('0'))
        };
        if h > 0 {
            format!("{h}h{m}m{secs}")
        } else if m > 0 {
            format!("{m}m{secs}")
        } else {
            secs
        }
    };
    if neg { format!("-{body}") } else { body }
}

fn trim_frac(v: u64, unit: u64) -> String {
    let whole = v / unit;
    let frac = v % unit;
    if frac == 0 {
        return whole.to_string();
    }
    let digits = unit.to_string().len() - 1;
    let f = format!("{frac:0digits$}");
    format!("{whole}.{}", f.trim_end_matches('0'))
}

/// `HEALTHCHECK {Test:[…] Interval:… Timeout:… StartPeriod:… StartInterval:… Retries:N}`.
pub fn healthcheck(h: &Healthcheck) -> String {
    format!(
        "HEALTHCHECK {{Test:{} Interval:{} Timeout:{} StartPeriod:{} StartInterval:{} Retries:{}}}",
        go_list(h.test.as_deref().unwrap_or(&[])),
        go_duration(h.interval.unwrap_or(0)),
        go_duration(h.timeout.unwrap_or(0)),
        go_duration(h.start_period.unwrap_or(0)),
        go_duration(h.start_interval.unwrap_or(0)),
        h.retries.unwrap_or(0)
    )
}

/// `RUN |N K=v … argv # buildkit`: `args` are the ARGs declared so far in the stage with
/// their current values.
pub fn run(args: &[(String, String)], argv: &[String]) -> String {
    let mut s = String::from("RUN ");
    if !args.is_empty() {
        s.push_str(&format!("|{} ", args.len()));
        for (k, v) in args {
            s.push_str(&format!("{k}={v} "));
        }
    }
    s.push_str(&argv.join(" "));
    s.push_str(" # buildkit");
    s
}

/// `COPY [--parents] [--chown=v] [--chmod=v] src… [<<NAME…] dest # buildkit`.
pub fn copy(
    keyword: &str,
    parents: bool,
    chown: &str,
    chmod: &str,
    sources: &[String],
    heredocs: &[String],
    dest: &str,
) -> String {
    let mut s = keyword.to_owned();
    if parents {
        s.push_str(" --parents");
    }
    if !chown.is_empty() {
        s.push_str(&format!(" --chown={chown}"));
    }
    if !chmod.is_empty() {
        s.push_str(&format!(" --chmod={chmod}"));
    }
    for src in sources {
        s.push(' ');
        s.push_str(src);
    }
    for h in heredocs {
        s.push_str(&format!(" <<{h}"));
    }
    s.push(' ');
    s.push_str(dest);
    s.push_str(" # buildkit");
    s
}

/// RFC 3339 UTC with seconds precision: `2024-01-01T00:00:00Z`.
pub fn rfc3339(unix_seconds: i64) -> String {
    let days = unix_seconds.div_euclid(86_400);
    let secs = unix_seconds.rem_euclid(86_400);
    // Howard Hinnant's civil_from_days
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        (secs % 3600) / 60,
        secs % 60
    )
}

/// Seconds since the epoch, now.
pub fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_match_buildkit() {
        assert_eq!(
            go_quoted_list(&["/bin/sh".into(), "-c".into(), "echo \"hi\"".into()]),
            r#"["/bin/sh" "-c" "echo \"hi\""]"#
        );
        assert_eq!(
            run(
                &[("A".into(), "1".into()), ("B".into(), String::new())],
                &["/bin/sh".into(), "-c".into(), "make".into()]
            ),
            "RUN |2 A=1 B= /bin/sh -c make # buildkit"
        );
        assert_eq!(
            run(&[], &["echo".into(), "hi".into()]),
            "RUN echo hi # buildkit"
        );
        assert_eq!(
            copy(
                "COPY",
                false,
                "1:2",
                "",
                &["a".into(), "b".into()],
                &[],
                "/d/"
            ),
            "COPY --chown=1:2 a b /d/ # buildkit"
        );
        let h = Healthcheck {
            test: Some(vec!["CMD-SHELL".into(), "curl -f x".into()]),
            interval: Some(300_000_000_000),
            timeout: Some(3_000_000_000),
            ..Default::default()
        };
        assert_eq!(
            healthcheck(&h),
            "HEALTHCHECK {Test:[CMD-SHELL curl -f x] Interval:5m0s Timeout:3s StartPeriod:0s StartInterval:0s Retries:0}"
        );
        assert_eq!(go_duration(1_500_000_000), "1.5s");
        assert_eq!(go_duration(3_600_000_000_000), "1h0m0s");
        assert_eq!(go_duration(300_000_000), "300ms");
    }

    #[test]
    fn rfc3339_formats_utc() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_704_067_200), "2024-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_825_600), "2000-02-29T12:00:00Z");
    }
}
