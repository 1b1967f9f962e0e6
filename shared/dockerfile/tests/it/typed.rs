//! The typed instruction layer: every instruction and flag.

use strata_dockerfile::{
    BaseImage, CacheSharing, Command, CommandLine, Healthcheck, MountType, NetworkMode, Protocol,
    SecurityMode,
};

use crate::{df, df_err};

fn only(src: &str) -> Command {
    let d = df(&format!("FROM alpine\n{src}"));
    d.stages[0].instructions[0].command.clone()
}

#[test]
fn from_forms() {
    let d = df("FROM --platform=linux/arm64 alpine:3.19 AS Build\nFROM scratch\nFROM build");
    assert_eq!(d.stages[0].name.as_deref(), Some("build"));
    assert_eq!(
        d.stages[0].platform.as_ref().unwrap().to_string(),
        "linux/arm64"
    );
    assert_eq!(d.stages[0].base, BaseImage::Image("alpine:3.19".into()));
    assert_eq!(d.stages[1].base, BaseImage::Scratch);
    assert_eq!(d.stages[2].base, BaseImage::Stage(0));
    assert!(df_err("FROM a b").contains("FROM requires either one or three arguments"));
    assert!(df_err("FROM a AS 1x").contains("invalid name for build stage"));
    assert!(df_err("FROM").contains("FROM requires either one or three arguments"));
    assert!(df_err("FROM --platform=linux a\nFROM --foo=x b").contains("unknown flag: --foo"));
}

#[test]
fn run_forms_and_flags() {
    let Command::Run(r) = only(
        "RUN --network=none --security=insecure --mount=type=cache,target=/root/.cache,sharing=locked --mount=type=secret,id=tok,env=TOKEN make build",
    ) else {
        panic!()
    };
    assert_eq!(r.command, CommandLine::Shell("make build".into()));
    assert_eq!(r.network, NetworkMode::None);
    assert_eq!(r.security, SecurityMode::Insecure);
    assert_eq!(r.mounts.len(), 2);
    assert_eq!(
        (r.mounts[0].kind, r.mounts[0].sharing),
        (MountType::Cache, CacheSharing::Locked)
    );
    assert_eq!(
        (
            r.mounts[1].kind,
            r.mounts[1].env.as_deref(),
            r.mounts[1].target.as_deref()
        ),
        (MountType::Secret, Some("TOKEN"), None)
    );
    let Command::Run(r) = only("RUN [\"echo\", \"$HOME\"]") else {
        panic!()
    };
    assert_eq!(
        r.command,
        CommandLine::Exec(vec!["echo".into(), "$HOME".into()])
    );
    assert!(df_err("FROM a\nRUN --network=bridge x").contains("invalid network mode \"bridge\""));
    assert!(df_err("FROM a\nRUN --mount=type=cache x").contains("requires a target"));
    assert!(
        df_err("FROM a\nRUN --mount=type=bind,target=/x,bogus=1 x")
            .contains("unexpected key 'bogus'")
    );
    assert!(df_err("FROM a\nRUN --link x").contains("unknown flag: --link"));
}

#[test]
fn run_mount_values_are_expanded() {
    let d =
        df("FROM a\nARG CACHE=/var/cache/apt\nRUN --mount=type=cache,target=$CACHE apt-get update");
    let Command::Run(r) = &d.stages[0].instructions[1].command else {
        panic!()
    };
    assert_eq!(r.mounts[0].target.as_deref(), Some("/var/cache/apt"));
    assert!(
        df_err("FROM a AS b\nFROM a\nARG X=b\nRUN --mount=from=$X,target=/x true")
            .contains("'from' doesn't support variable expansion")
    );
}

#[test]
fn run_heredoc_script() {
    let d = df("FROM a\nRUN <<EOF\n#!/bin/bash\necho hi\nEOF\nRUN <<EOF bash\necho\nEOF\n");
    let Command::Run(r) = &d.stages[0].instructions[0].command else {
        panic!()
    };
    assert_eq!(
        r.script_heredoc().unwrap().content,
        "#!/bin/bash\necho hi\n"
    );
    let Command::Run(r) = &d.stages[0].instructions[1].command else {
        panic!()
    };
    assert!(r.script_heredoc().is_none());
    assert_eq!(
        r.shell_command_with_heredocs().unwrap(),
        "<<EOF bash\necho\nEOF"
    );
}

#[test]
fn cmd_entrypoint_shell() {
    assert_eq!(
        only("CMD echo hi"),
        Command::Cmd(CommandLine::Shell("echo hi".into()))
    );
    assert_eq!(
        only("CMD [\"a\",\"b\"]"),
        Command::Cmd(CommandLine::Exec(vec!["a".into(), "b".into()]))
    );
    assert_eq!(only("CMD"), Command::Cmd(CommandLine::Shell(String::new())));
    assert_eq!(
        only("ENTRYPOINT []"),
        Command::Entrypoint(CommandLine::Exec(vec![]))
    );
    assert_eq!(
        only("SHELL [\"/bin/bash\", \"-euo\", \"pipefail\", \"-c\"]"),
        Command::Shell(vec![
            "/bin/bash".into(),
            "-euo".into(),
            "pipefail".into(),
            "-c".into()
        ])
    );
    assert!(
        df_err("FROM a\nSHELL /bin/bash -c")
            .contains("SHELL requires the arguments to be in JSON form")
    );
    assert!(df_err("FROM a\nSHELL []").contains("SHELL requires at least one argument"));
    let argv = CommandLine::Shell("x".into()).argv(&["/bin/sh".into(), "-c".into()]);
    assert_eq!(argv, vec!["/bin/sh", "-c", "x"]);
}

#[test]
fn env_and_label() {
    let d = df(
        "FROM a\nENV A=1 B=\"two words\" C=${A}x\nENV D $A-legacy\nLABEL org.opencontainers.image.title=\"My App\" v=$D",
    );
    let i = &d.stages[0].instructions;
    let Command::Env(kv) = &i[0].command else {
        panic!()
    };
    assert_eq!(
        (kv[1].key.as_str(), kv[1].value.as_str()),
        ("B", "two words")
    );
    assert_eq!(kv[2].value, "x", "pairs see the env before the instruction");
    let Command::Env(kv) = &i[1].command else {
        panic!()
    };
    assert_eq!((kv[0].value.as_str(), kv[0].legacy), ("1-legacy", true));
    let Command::Label(kv) = &i[2].command else {
        panic!()
    };
    assert_eq!(kv[0].value, "My App");
    assert_eq!(kv[1].value, "1-legacy");
    assert!(df_err("FROM a\nENV").contains("ENV requires at least one argument"));
    assert!(df_err("FROM a\nENV =x").contains("ENV names can not be blank"));
    assert!(df_err("FROM a\nLABEL").contains("LABEL requires at least one argument"));
}

#[test]
fn expose_ports() {
    let d = df("FROM a\nARG P=8080\nEXPOSE 80 $P 53/udp 9000-9002/tcp 7/SCTP");
    let Command::Expose(e) = &d.stages[0].instructions[1].command else {
        panic!()
    };
    let shown: Vec<String> = e.ports.iter().map(|p| p.to_string()).collect();
    assert_eq!(
        shown,
        vec![
            "80/tcp", "8080/tcp", "53/udp", "9000/tcp", "9001/tcp", "9002/tcp", "7/sctp"
        ]
    );
    assert_eq!(e.ports[6].protocol, Protocol::Sctp);
    assert!(df_err("FROM a\nEXPOSE 80/xyz").contains("invalid proto: xyz"));
    assert!(df_err("FROM a\nEXPOSE 70000").contains("invalid containerPort"));
    assert!(df_err("FROM a\nEXPOSE").contains("EXPOSE requires at least one argument"));
}

#[test]
fn copy_and_add_flags() {
    let d = df(
        "FROM a AS build\nFROM b\nARG U=app\nCOPY --from=build --chown=$U:$U --chmod=755 --link --parents --exclude=*.md --exclude=tmp /src/ ./dst/\nADD --checksum=sha256:abc --keep-git-dir=false --unpack=true https://example.com/x.tgz /x\nCOPY [\"a b\", \"/c d/\"]",
    );
    let i = &d.stages[1].instructions;
    let Command::Copy(c) = &i[1].command else {
        panic!()
    };
    assert_eq!(c.from.as_deref(), Some("build"));
    assert_eq!(c.chown.as_deref(), Some("app:app"));
    assert_eq!(c.chmod.as_deref(), Some("755"));
    assert!(c.link && c.parents);
    assert_eq!(c.excludes, vec!["*.md", "tmp"]);
    assert_eq!(
        (c.sources.clone(), c.dest.clone()),
        (vec!["/src/".to_string()], "./dst/".to_string())
    );
    let Command::Add(a) = &i[2].command else {
        panic!()
    };
    assert_eq!(
        (a.checksum.as_deref(), a.keep_git_dir, a.unpack),
        (Some("sha256:abc"), Some(false), Some(true))
    );
    let Command::Copy(c) = &i[3].command else {
        panic!()
    };
    assert!(c.json);
    assert_eq!(c.sources, vec!["a b"]);
    assert!(df_err("FROM a\nCOPY x").contains("COPY requires at least two arguments"));
    assert!(df_err("FROM a\nCOPY --checksum=x a b").contains("unknown flag: --checksum"));
    assert!(df_err("FROM a\nADD --from=x a b").contains("unknown flag: --from"));
    assert!(df_err("FROM a\nCOPY --chmod=999 a b").contains("invalid chmod parameter: '999'"));
    assert!(
        df_err("FROM a\nCOPY https://x.example/f /f").contains("source can't be a URL for COPY")
    );
    assert!(
        df_err("FROM a\nADD --checksum=sha256:x a b /d/")
            .contains("checksum can't be specified for multiple sources")
    );
    assert!(
        df_err("FROM a\nADD --checksum=sha256:x a /d/")
            .contains("checksum requires HTTP(S) or Git sources")
    );
    assert!(
        df_err("FROM a\nCOPY --link=maybe a b")
            .contains("expecting boolean value for flag --link, not: maybe")
    );
    assert!(
        df_err("FROM a\nCOPY --from=a --from=b x y").contains("duplicate flag specified: --from")
    );
}

#[test]
fn copy_heredoc_sources() {
    let d = df(
        "FROM a\nARG NAME=world\nCOPY <<EOF <<'RAW' /etc/\nhello $NAME \"q\"\nEOF\nraw $NAME\nRAW\n",
    );
    let Command::Copy(c) = &d.stages[0].instructions[1].command else {
        panic!()
    };
    assert!(c.sources.is_empty());
    assert_eq!(c.inline_files[0].name, "EOF");
    assert_eq!(c.inline_files[0].content, "hello world \"q\"\n");
    assert_eq!(c.inline_files[1].content, "raw $NAME\n");
    assert!(
        df_err("FROM a\nCOPY x <<EOF\nEOF\n").contains("cannot accept a heredoc as a destination")
    );
}

#[test]
fn volume_user_workdir_stopsignal_maintainer() {
    let d = df(
        "FROM a\nARG D=data\nVOLUME /$D [\"x\"]\nVOLUME [\"/a\", \"/b\"]\nUSER ${D}:staff\nWORKDIR /app\nWORKDIR sub/../src\nSTOPSIGNAL SIGKILL\nMAINTAINER me <me@x>",
    );
    let i = &d.stages[0].instructions;
    assert_eq!(
        i[1].command,
        Command::Volume(vec!["/data".into(), "[x]".into()])
    );
    assert_eq!(
        i[2].command,
        Command::Volume(vec!["/a".into(), "/b".into()])
    );
    assert_eq!(i[3].command, Command::User("data:staff".into()));
    let Command::Workdir(w) = &i[5].command else {
        panic!()
    };
    assert_eq!(w.resolved, "/app/src");
    assert_eq!(d.stages[0].workdir, "/app/src");
    assert_eq!(i[6].command, Command::StopSignal("SIGKILL".into()));
    assert_eq!(i[7].command, Command::Maintainer("me <me@x>".into()));
    assert!(df_err("FROM a\nSTOPSIGNAL SIGNOPE").contains("invalid signal: SIGNOPE"));
    assert!(df_err("FROM a\nUSER").contains("USER requires exactly one argument"));
    assert!(df_err("FROM a\nWORKDIR").contains("WORKDIR requires exactly one argument"));
    assert!(
        df_err("FROM a\nVOLUME [\"\"]").contains("VOLUME specified can not be an empty string")
    );
    assert!(df_err("FROM a\nMAINTAINER").contains("MAINTAINER requires exactly one argument"));
}

#[test]
fn healthcheck() {
    assert_eq!(
        only("HEALTHCHECK NONE"),
        Command::Healthcheck(Healthcheck::None)
    );
    let Command::Healthcheck(Healthcheck::Check {
        test,
        interval_ns,
        timeout_ns,
        retries,
        ..
    }) = only(
        "HEALTHCHECK --interval=5m --timeout=3s --retries=4 CMD curl -f http://localhost/ || exit 1",
    )
    else {
        panic!()
    };
    assert_eq!(
        test,
        vec!["CMD-SHELL", "curl -f http://localhost/ || exit 1"]
    );
    assert_eq!(
        (interval_ns, timeout_ns, retries),
        (300_000_000_000, 3_000_000_000, 4)
    );
    let Command::Healthcheck(Healthcheck::Check { test, .. }) =
        only("HEALTHCHECK CMD [\"/bin/check\", \"-q\"]")
    else {
        panic!()
    };
    assert_eq!(test, vec!["CMD", "/bin/check", "-q"]);
    assert!(df_err("FROM a\nHEALTHCHECK").contains("HEALTHCHECK requires at least one argument"));
    assert!(df_err("FROM a\nHEALTHCHECK NONE x").contains("HEALTHCHECK NONE takes no arguments"));
    assert!(df_err("FROM a\nHEALTHCHECK CMD").contains("Missing command after HEALTHCHECK CMD"));
    assert!(
        df_err("FROM a\nHEALTHCHECK CONNECT TCP 7000")
            .contains("Unknown type \"CONNECT\" in HEALTHCHECK (try CMD)")
    );
    assert!(
        df_err("FROM a\nHEALTHCHECK --interval=1us CMD x")
            .contains("Interval \"interval\" cannot be less than 1ms")
    );
    assert!(
        df_err("FROM a\nHEALTHCHECK --retries=-1 CMD x")
            .contains("--retries cannot be negative (-1)")
    );
    assert!(df_err("FROM a\nHEALTHCHECK --timeout=abc CMD x").contains("invalid duration"));
}

#[test]
fn onbuild() {
    let Command::Onbuild(o) = only("ONBUILD COPY --chown=1:1 . /app") else {
        panic!()
    };
    assert_eq!(o.expression, "COPY --chown=1:1 . /app");
    assert!(matches!(
        o.trigger.as_ref().map(|t| &t.command),
        Some(Command::Copy(_))
    ));
    let Command::Onbuild(o) = only("onbuild RUN <<EOF\necho $X\nEOF") else {
        panic!()
    };
    assert_eq!(o.expression, "RUN <<EOF\necho $X\nEOF");
    assert!(
        df_err("FROM a\nONBUILD ONBUILD RUN x")
            .contains("Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed")
    );
    assert!(df_err("FROM a\nONBUILD FROM x").contains("FROM isn't allowed as an ONBUILD trigger"));
    assert!(
        df_err("FROM a\nONBUILD MAINTAINER x")
            .contains("MAINTAINER isn't allowed as an ONBUILD trigger")
    );
}

#[test]
fn arg_forms() {
    let d = df("FROM a\nARG A B=2 C=\"x y\"");
    let Command::Arg(a) = &d.stages[0].instructions[0].command else {
        panic!()
    };
    assert_eq!(a.len(), 3);
    assert_eq!(a[0].value, None);
    assert_eq!(a[1].value.as_deref(), Some("2"));
    assert_eq!(a[2].value.as_deref(), Some("x y"));
    assert!(df_err("FROM a\nARG =x").contains("ARG names can not be blank"));
    assert!(df_err("FROM a\nARG").contains("ARG requires at least one argument"));
    // ARG flags are never validated (BuildKit quirk).
    df("FROM a\nARG --foo X=1");
}

#[test]
fn flags_on_flagless_instructions() {
    assert!(df_err("FROM a\nUSER --foo bar").contains("unknown flag: --foo"));
    assert!(df_err("FROM a\nENV --x A=1").contains("unknown flag: --x"));
    assert!(df_err("FROM a\nCMD --doit [\"a\"]").contains("unknown flag: --doit"));
}

#[test]
fn serde_json_output() {
    let d = df("FROM alpine AS a\nRUN echo\nFROM scratch\nCOPY --from=a x y");
    let json = serde_json::to_value(&d).unwrap();
    assert_eq!(json["stages"][0]["name"], "a");
    let ast = strata_dockerfile::parse(b"FROM a").unwrap();
    let json = serde_json::to_string(&ast).unwrap();
    assert!(json.contains("\"value\":\"FROM\""));
}
