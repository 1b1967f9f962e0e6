//! From strata-dockerfile's typed tree to the `strata.parser.v1` messages.

use strata_dockerfile as df;
use strata_proto::{common, parser as pb};

fn span(s: df::Span, column: usize) -> common::Span {
    common::Span {
        start_line: s.start_line as u32,
        end_line: s.end_line as u32,
        start_column: column as u32,
    }
}

fn key_values(pairs: &[(String, String)]) -> Vec<pb::KeyValue> {
    pairs
        .iter()
        .map(|(k, v)| pb::KeyValue {
            key: k.clone(),
            value: v.clone(),
        })
        .collect()
}

fn heredoc(h: &df::Heredoc) -> pb::Heredoc {
    pb::Heredoc {
        name: h.name.clone(),
        content: h.content.clone(),
        chomp: h.chomp,
        expand: h.expand,
    }
}

fn command(line: &df::CommandLine, heredocs: &[df::Heredoc]) -> pb::Command {
    let (args, shell_form) = match line {
        df::CommandLine::Shell(s) => (vec![s.clone()], true),
        df::CommandLine::Exec(v) => (v.clone(), false),
    };
    pb::Command {
        args,
        shell_form,
        heredocs: heredocs.iter().map(heredoc).collect(),
    }
}

fn arg_declaration(a: &df::ArgDeclaration) -> pb::ArgDeclaration {
    pb::ArgDeclaration {
        name: a.name.clone(),
        default_value: a.default.clone(),
        value: a.value.clone(),
    }
}

fn mount(m: &df::Mount) -> pb::Mount {
    let kind = match m.kind {
        df::MountType::Bind => "bind",
        df::MountType::Cache => "cache",
        df::MountType::Tmpfs => "tmpfs",
        df::MountType::Secret => "secret",
        df::MountType::Ssh => "ssh",
    };
    let sharing = match m.sharing {
        df::CacheSharing::Shared => "shared",
        df::CacheSharing::Private => "private",
        df::CacheSharing::Locked => "locked",
    };
    let mut options = std::collections::HashMap::new();
    if let Some(mode) = m.mode {
        options.insert("mode".to_string(), format!("{mode:o}"));
    }
    if let Some(uid) = m.uid {
        options.insert("uid".to_string(), uid.to_string());
    }
    if let Some(gid) = m.gid {
        options.insert("gid".to_string(), gid.to_string());
    }
    if let Some(size) = m.size_bytes {
        options.insert("size".to_string(), size.to_string());
    }
    if m.required {
        options.insert("required".to_string(), "true".to_string());
    }
    pb::Mount {
        r#type: kind.to_string(),
        target: m.target.clone().unwrap_or_default(),
        source: m.source.clone().unwrap_or_default(),
        from: m.from.clone().unwrap_or_default(),
        readonly: m.readonly,
        id: m.id.clone().unwrap_or_default(),
        sharing: sharing.to_string(),
        options,
    }
}

fn copy(c: &df::Copy) -> pb::CopyInstruction {
    pb::CopyInstruction {
        sources: c.sources.clone(),
        destination: c.dest.clone(),
        from: c.from.clone().unwrap_or_default(),
        chown: c.chown.clone().unwrap_or_default(),
        chmod: c.chmod.clone().unwrap_or_default(),
        link: c.link,
        parents: c.parents,
        excludes: c.excludes.clone(),
        checksum: c.checksum.clone().unwrap_or_default(),
        keep_git_dir: c.keep_git_dir.unwrap_or(false),
        heredocs: c
            .inline_files
            .iter()
            .map(|f| pb::Heredoc {
                name: f.name.clone(),
                content: f.content.clone(),
                chomp: false,
                expand: f.expand,
            })
            .collect(),
        json_form: c.json,
        unpack: c.unpack,
    }
}

fn key_value_instruction(kvs: &[df::KeyValue]) -> pb::KeyValueInstruction {
    pb::KeyValueInstruction {
        legacy_form: kvs.iter().any(|kv| kv.legacy),
        pairs: kvs
            .iter()
            .map(|kv| pb::KeyValue {
                key: kv.key.clone(),
                value: kv.value.clone(),
            })
            .collect(),
    }
}

/// One instruction; `stage` and `index` give the build environment a RUN sees.
pub fn instruction(stage: &df::Stage, index: usize, inst: &df::Instruction) -> pb::Instruction {
    use pb::instruction::Detail;
    let value = |v: &str| pb::ValueInstruction {
        value: v.to_string(),
    };
    let detail = match &inst.command {
        df::Command::Run(run) => Some(Detail::Run(pb::RunInstruction {
            command: Some(command(&run.command, &run.heredocs)),
            mounts: run.mounts.iter().map(mount).collect(),
            network: match run.network {
                df::NetworkMode::Default => String::new(),
                df::NetworkMode::None => "none".into(),
                df::NetworkMode::Host => "host".into(),
            },
            security: match run.security {
                df::SecurityMode::Sandbox => String::new(),
                df::SecurityMode::Insecure => "insecure".into(),
            },
        })),
        df::Command::Cmd(c) => Some(Detail::Cmd(pb::CommandInstruction {
            command: Some(command(c, &[])),
        })),
        df::Command::Entrypoint(c) => Some(Detail::Entrypoint(pb::CommandInstruction {
            command: Some(command(c, &[])),
        })),
        df::Command::Shell(words) => Some(Detail::Shell(pb::CommandInstruction {
            command: Some(pb::Command {
                args: words.clone(),
                shell_form: false,
                heredocs: vec![],
            }),
        })),
        df::Command::Env(kvs) => Some(Detail::Env(key_value_instruction(kvs))),
        df::Command::Label(kvs) => Some(Detail::Label(key_value_instruction(kvs))),
        df::Command::Copy(c) => Some(Detail::Copy(copy(c))),
        df::Command::Add(c) => Some(Detail::Add(copy(c))),
        df::Command::Expose(e) => Some(Detail::Expose(pb::ExposeInstruction {
            ports: e.ports.iter().map(|p| p.to_string()).collect(),
        })),
        df::Command::Arg(decls) => Some(Detail::Arg(pb::ArgInstruction {
            args: decls.iter().map(arg_declaration).collect(),
        })),
        df::Command::User(u) => Some(Detail::User(value(u))),
        df::Command::Workdir(w) => Some(Detail::Workdir(value(&w.path))),
        df::Command::StopSignal(s) => Some(Detail::Stopsignal(value(s))),
        df::Command::Maintainer(m) => Some(Detail::Maintainer(value(m))),
        df::Command::Volume(paths) => Some(Detail::Volume(pb::VolumeInstruction {
            paths: paths.clone(),
        })),
        df::Command::Healthcheck(h) => Some(Detail::Healthcheck(match h {
            df::Healthcheck::None => pb::HealthcheckInstruction {
                none: true,
                ..Default::default()
            },
            df::Healthcheck::Check {
                test,
                interval_ns,
                timeout_ns,
                start_period_ns,
                start_interval_ns,
                retries,
            } => pb::HealthcheckInstruction {
                none: false,
                command: Some(pb::Command {
                    args: test.clone(),
                    shell_form: test.first().is_some_and(|t| t == "CMD-SHELL"),
                    heredocs: vec![],
                }),
                interval_ns: *interval_ns,
                timeout_ns: *timeout_ns,
                start_period_ns: *start_period_ns,
                start_interval_ns: *start_interval_ns,
                retries: *retries,
            },
        })),
        df::Command::Onbuild(o) => Some(Detail::Onbuild(pb::OnbuildInstruction {
            trigger: o.expression.clone(),
        })),
        // FROM starts a stage; it is described by the Stage message, never an instruction.
        df::Command::From(_) => None,
    };
    let is_run = matches!(inst.command, df::Command::Run(_));
    pb::Instruction {
        keyword: inst.keyword.to_uppercase(),
        original: inst.original.clone(),
        span: Some(span(inst.span, inst.column)),
        build_env: if is_run {
            key_values(&stage.build_env_before(index))
        } else {
            vec![]
        },
        args_in_scope: if is_run {
            stage
                .args_before(index)
                .into_iter()
                .map(|(name, value)| pb::ArgDeclaration {
                    name,
                    default_value: None,
                    value,
                })
                .collect()
        } else {
            vec![]
        },
        detail,
    }
}

/// A whole Dockerfile.
pub fn dockerfile(d: &df::Dockerfile) -> pb::Dockerfile {
    pb::Dockerfile {
        directives: d
            .directives
            .iter()
            .map(|x| (x.name.clone(), x.value.clone()))
            .collect(),
        meta_args: d.meta_args.iter().map(arg_declaration).collect(),
        stages: d
            .stages
            .iter()
            .map(|s| pb::Stage {
                index: s.index as u32,
                name: s.name.clone().unwrap_or_default(),
                base: s.base_name_expanded.clone(),
                base_stage: match s.base {
                    df::BaseImage::Stage(i) => Some(i as u32),
                    _ => None,
                },
                platform: s
                    .platform
                    .as_ref()
                    .map(|p| match &p.variant {
                        Some(v) => format!("{}/{}/{v}", p.os, p.architecture),
                        None => format!("{}/{}", p.os, p.architecture),
                    })
                    .unwrap_or_default(),
                instructions: s
                    .instructions
                    .iter()
                    .enumerate()
                    .map(|(i, inst)| instruction(s, i, inst))
                    .collect(),
                depends_on: d
                    .graph
                    .stage_dependencies(s.index)
                    .into_iter()
                    .map(|i| i as u32)
                    .collect(),
                span: Some(span(s.from_span, 1)),
                original: format!("FROM {}", s.base_name),
                scratch: matches!(s.base, df::BaseImage::Scratch),
                workdir: s.workdir.clone(),
                env: key_values(&s.config_env),
            })
            .collect(),
        target_stage: d.target as u32,
        build_order: d
            .graph
            .build_order()
            .into_iter()
            .map(|i| i as u32)
            .collect(),
        escape: d.escape.to_string(),
        unused_build_args: d.unused_build_args.clone(),
    }
}

/// Lint warnings.
pub fn warnings(d: &df::Dockerfile) -> Vec<pb::Warning> {
    d.warnings
        .iter()
        .map(|w| pb::Warning {
            rule: w.rule.to_string(),
            message: w.message.clone(),
            span: Some(span(w.span, 0)),
            url: w.url(),
        })
        .collect()
}
