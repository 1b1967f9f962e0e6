//! `--format '{{…}}'` Go templates on `inspect`, `images` and `history`, as Docker users
//! type them.

use super::images_io::{fails, ok, root_with_busybox, strata};

#[test]
fn inspect_templates_select_fields() {
    let (root, _tar, id) = root_with_busybox();
    let r = root.path();
    let f = |t: &str| ok(strata(r, &["inspect", "-f", t, "busybox"]));
    assert_eq!(f("{{.Config.Cmd}}"), "[sh]\n");
    assert_eq!(f("{{json .Config.Cmd}}"), "[\"sh\"]\n");
    // a nil slice of Docker's typed struct prints as Go prints it
    assert_eq!(f("{{.Config.Entrypoint}}"), "[]\n");
    assert_eq!(f("{{.Id}}"), format!("{id}\n"));
    assert_eq!(f("{{index .RepoTags 0}}"), "busybox:latest\n");
    assert_eq!(f("{{.Os}}/{{.Architecture}}"), "linux/amd64\n");
    assert_eq!(
        f("{{range .RootFS.Layers}}{{.}} {{end}}")
            .matches("sha256:")
            .count(),
        1
    );
    assert_eq!(f("{{.Config.Labels.nope}}"), "<no value>\n");
    assert_eq!(f("{{if .Config.Cmd}}has cmd{{end}}"), "has cmd\n");
    // one line per image
    let two = ok(strata(
        r,
        &["inspect", "--format", "{{.Id}}", "busybox", &id],
    ));
    assert_eq!(two, format!("{id}\n{id}\n"));
    // json is the default output
    let json = ok(strata(r, &["inspect", "--format", "json", "busybox"]));
    assert_eq!(json, ok(strata(r, &["inspect", "busybox"])));
}

#[test]
fn images_and_history_templates_and_tables() {
    let (root, _tar, id) = root_with_busybox();
    let r = root.path();
    ok(strata(r, &["tag", "busybox", "app:v1"]));
    let out = ok(strata(
        r,
        &["images", "--format", "{{.Repository}}:{{.Tag}}"],
    ));
    assert_eq!(out, "app:v1\nbusybox:latest\n");
    let out = ok(strata(
        r,
        &[
            "images",
            "--format",
            "table {{.Repository}}\\t{{.Tag}}\\t{{.ID}}",
        ],
    ));
    let short = &id[7..19];
    assert_eq!(
        out,
        format!(
            "REPOSITORY   TAG       IMAGE ID\napp          v1        {short}\nbusybox      latest    {short}\n"
        )
    );
    let out = ok(strata(
        r,
        &["images", "--no-trunc", "--format", "{{.ID}}", "busybox"],
    ));
    assert_eq!(out, format!("{id}\n"));

    let out = ok(strata(
        r,
        &[
            "history",
            "--format",
            "{{.CreatedBy}}|{{.Comment}}",
            "busybox",
        ],
    ));
    assert_eq!(out, "|Imported from -\n");
    let out = ok(strata(
        r,
        &[
            "history",
            "--format",
            "table {{.ID}}\\t{{.Comment}}",
            "busybox",
        ],
    ));
    assert_eq!(
        out,
        format!("IMAGE          COMMENT\n{short}   Imported from -\n")
    );
    let out = ok(strata(r, &["history", "--format", "{{json .}}", "busybox"]));
    assert!(out.starts_with("{\"Comment\":\"Imported from -\""), "{out}");
}

#[test]
fn bad_templates_are_user_errors_naming_the_position() {
    let (root, _tar, _id) = root_with_busybox();
    let r = root.path();
    let check = |args: &[&str], want: &str| {
        let out = strata(r, args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let err = fails(out);
        assert!(err.contains(want), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{err}");
    };
    check(
        &["inspect", "-f", "{{.Config.Cmd", "busybox"],
        "template: :1:1: unclosed action",
    );
    check(
        &["images", "--format", "ok {{nosuch .Tag}}"],
        "template: :1:4: function \"nosuch\" not defined",
    );
    check(
        &["history", "--format", "{{range .ID}}{{end}}", "busybox"],
        "can't iterate over string",
    );
    check(
        &["inspect", "-f", "{{.Id.Deeper}}", "busybox"],
        "executing at <.Id.Deeper>: can't evaluate field Deeper in type string",
    );
    let deep = "{{if .Id}}".repeat(100) + &"{{end}}".repeat(100);
    check(&["inspect", "-f", &deep, "busybox"], "nesting deeper than");
}
