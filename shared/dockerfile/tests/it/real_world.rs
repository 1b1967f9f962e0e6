//! Real-world-looking Dockerfiles end to end.

use strata_dockerfile::{BaseImage, Command, CommandLine, MountType};

use crate::{df, df_args, dump_of};

const GO: &str = r#"# syntax=docker/dockerfile:1.7
ARG GO_VERSION=1.22
ARG ALPINE_VERSION=3.19

FROM --platform=$BUILDPLATFORM golang:${GO_VERSION}-alpine${ALPINE_VERSION} AS build
WORKDIR /src
ARG TARGETOS TARGETARCH
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=bind,source=go.sum,target=go.sum \
    --mount=type=bind,source=go.mod,target=go.mod \
    go mod download -x
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=bind,target=. \
    CGO_ENABLED=0 GOOS=$TARGETOS GOARCH=$TARGETARCH go build -o /bin/server ./cmd/server

FROM alpine:${ALPINE_VERSION} AS final
RUN --mount=type=cache,target=/var/cache/apk \
    apk --update add \
        ca-certificates \
        tzdata \
        && \
        update-ca-certificates
ARG UID=10001
RUN adduser \
    --disabled-password \
    --gecos "" \
    --home "/nonexistent" \
    --shell "/sbin/nologin" \
    --no-create-home \
    --uid "${UID}" \
    appuser
USER appuser
COPY --from=build /bin/server /bin/
EXPOSE 8080
ENTRYPOINT [ "/bin/server" ]
"#;

#[test]
fn go_multistage() {
    let d = df(GO);
    assert_eq!(d.syntax(), Some("docker/dockerfile:1.7"));
    assert_eq!(d.stages[0].base_name_expanded, "golang:1.22-alpine3.19");
    assert_eq!(d.stages[1].base_name_expanded, "alpine:3.19");
    assert_eq!(d.graph.levels, vec![vec![0], vec![1]]);
    let Command::Run(r) = &d.stages[0].instructions[2].command else {
        panic!()
    };
    assert_eq!(r.mounts.len(), 3);
    assert_eq!(r.mounts[1].source.as_deref(), Some("go.sum"));
    let Command::Run(r) = &d.stages[1].instructions[2].command else {
        panic!()
    };
    let CommandLine::Shell(cmd) = &r.command else {
        panic!()
    };
    assert!(cmd.starts_with("adduser     --disabled-password"), "{cmd}");
    assert_eq!(
        d.stages[1].instructions[3].command,
        Command::User("appuser".into())
    );
    assert!(d.warnings.is_empty(), "{:?}", d.warnings);
}

const NODE: &str = r#"FROM node:20-bookworm-slim AS deps
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev

FROM node:20-bookworm-slim AS builder
WORKDIR /app
COPY --from=deps /app/node_modules ./node_modules
COPY . .
ENV NEXT_TELEMETRY_DISABLED 1
RUN npm run build

FROM node:20-bookworm-slim AS runner
WORKDIR /app
ENV NODE_ENV=production
RUN groupadd --system --gid 1001 nodejs && useradd --system --uid 1001 nextjs
COPY --from=builder --chown=nextjs:nodejs /app/.next/standalone ./
COPY --from=builder /app/public ./public
USER nextjs
EXPOSE 3000
ENV PORT=3000 \
    HOSTNAME="0.0.0.0"
CMD ["node", "server.js"]
"#;

#[test]
fn node_nextjs() {
    let d = df(NODE);
    assert_eq!(d.graph.levels, vec![vec![0], vec![1], vec![2]]);
    let rules: Vec<_> = d.warnings.iter().map(|w| w.rule).collect();
    assert_eq!(rules, vec!["LegacyKeyValueFormat"]);
    let Command::Env(kv) = &d.stages[2].instructions[7].command else {
        panic!()
    };
    assert_eq!(kv[1].value, "0.0.0.0");
}

const PYTHON: &str = r#"FROM python:3.12-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=off

RUN set -eux; \
    apt-get update; \
    apt-get install -y --no-install-recommends \
        build-essential \
        libpq-dev \
    ; \
    rm -rf /var/lib/apt/lists/*

WORKDIR /code
COPY requirements.txt /code/
RUN pip install -r requirements.txt
COPY . /code/
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
  CMD python -c "import urllib.request; urllib.request.urlopen('http://localhost:8000/health')" || exit 1
CMD ["gunicorn", "--bind", "0.0.0.0:8000", "app.wsgi"]
"#;

#[test]
fn python_apt_continuations() {
    let d = df(PYTHON);
    let i = &d.stages[0].instructions;
    let Command::Run(r) = &i[1].command else {
        panic!()
    };
    let CommandLine::Shell(cmd) = &r.command else {
        panic!()
    };
    assert!(
        cmd.contains("build-essential         libpq-dev     ;"),
        "{cmd}"
    );
    assert!(matches!(i[6].command, Command::Healthcheck(_)));
}

const HEREDOCS: &str = r#"# syntax=docker/dockerfile:1
FROM debian:bookworm
RUN <<EOT bash
  set -ex
  apt-get update
  apt-get install -y vim
EOT
RUN <<-EOF
	#!/usr/bin/env python3
	print("hello")
	EOF
COPY <<-"EOF" /etc/motd
	Welcome $USER
	EOF
ARG GREETING=hi
COPY <<EOF /app/greeting.txt
${GREETING} there
EOF
"#;

#[test]
fn heredoc_scripts() {
    let d = df(HEREDOCS);
    let i = &d.stages[0].instructions;
    let Command::Run(r) = &i[0].command else {
        panic!()
    };
    assert_eq!(
        r.heredocs[0].content,
        "  set -ex\n  apt-get update\n  apt-get install -y vim\n"
    );
    let Command::Run(r) = &i[1].command else {
        panic!()
    };
    let script = r.script_heredoc().unwrap();
    assert_eq!(script.body(), "#!/usr/bin/env python3\nprint(\"hello\")\n");
    let Command::Copy(c) = &i[2].command else {
        panic!()
    };
    assert_eq!(c.inline_files[0].content, "Welcome $USER\n");
    let Command::Copy(c) = &i[4].command else {
        panic!()
    };
    assert_eq!(c.inline_files[0].content, "hi there\n");
    assert_eq!(i[4].span.end_line, 18);
}

#[test]
fn windows_backtick_dockerfile() {
    let src = "# escape=`\nFROM mcr.microsoft.com/windows/servercore:ltsc2022\nSHELL [\"powershell\", \"-Command\"]\nRUN New-Item -ItemType Directory C:\\app; `\n    Write-Host done\nWORKDIR C:\\app\nCOPY . C:\\app\\\n";
    assert!(
        dump_of(src)
            .contains(r#"(run "New-Item -ItemType Directory C:\\app;     Write-Host done")"#)
    );
    let d = df(src);
    assert_eq!(d.escape, '`');
    let Command::Copy(c) = &d.stages[0].instructions[3].command else {
        panic!()
    };
    assert_eq!(c.dest, "C:\\app\\");
}

#[test]
fn arg_before_from_with_build_args() {
    let src = "ARG BASE=ubuntu:22.04\nARG VERSION\nFROM ${BASE}\nARG VERSION\nLABEL version=\"${VERSION:-dev}\"\nRUN echo $VERSION";
    let d = df_args(src, &[("VERSION", "1.2.3"), ("BASE", "debian:12")]);
    assert_eq!(d.stages[0].base, BaseImage::Image("debian:12".into()));
    let Command::Label(kv) = &d.stages[0].instructions[1].command else {
        panic!()
    };
    assert_eq!(kv[0].value, "1.2.3");
}

#[test]
fn cache_and_secret_mounts() {
    let src = "FROM python:3\nRUN --mount=type=secret,id=pip,target=/root/.config/pip/pip.conf,required \\\n    --mount=type=ssh \\\n    --mount=type=tmpfs,target=/tmp,size=100m \\\n    pip install -r requirements.txt";
    let d = df(src);
    let Command::Run(r) = &d.stages[0].instructions[0].command else {
        panic!()
    };
    let kinds: Vec<MountType> = r.mounts.iter().map(|m| m.kind).collect();
    assert_eq!(
        kinds,
        vec![MountType::Secret, MountType::Ssh, MountType::Tmpfs]
    );
    assert!(r.mounts[0].required);
    assert_eq!(r.mounts[1].id.as_deref(), Some("default"));
}

#[test]
fn nginx_style_long_file() {
    let mut src = String::from(
        "FROM nginx:alpine\nLABEL maintainer=\"NGINX Docker Maintainers <docker-maint@nginx.com>\"\nENV NGINX_VERSION 1.25.3\nRUN set -x \\\n",
    );
    for i in 0..200 {
        src.push_str(&format!("    && echo step{i} \\\n"));
    }
    src.push_str(
        "    && true\nSTOPSIGNAL SIGQUIT\nEXPOSE 80\nCMD [\"nginx\", \"-g\", \"daemon off;\"]\n",
    );
    let d = df(&src);
    assert_eq!(d.stages[0].instructions.len(), 6);
    assert_eq!(
        d.stages[0].instructions[2].span,
        strata_dockerfile::Span {
            start_line: 4,
            end_line: 205
        }
    );
}
