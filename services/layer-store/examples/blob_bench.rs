//! Layer-store throughput over gRPC on loopback, against the hashing floor.
//!
//! `cargo run -p strata-layer-store --example blob_bench [-- --gib N --small N]`
//!
//! The server runs in a child process (this same binary with `--serve`), so its peak RSS
//! (VmHWM) is its own. Measured in one run:
//! - `openssl dgst -sha256` over the same 1 GiB (from a file in the page cache): the floor;
//! - one 1 GiB blob written (announced digest, 1 MiB messages) and read back;
//! - 10,000 blobs of 4 KiB written by 64 concurrent clients, then stat'ed.
//!
//! The data is pseudo-random, so compression at rest gains nothing: the worst case.

use std::{
    io::{BufRead, BufReader, Write},
    path::PathBuf,
    process::{Command, Stdio},
    sync::Arc,
    time::{Duration, Instant},
};

use strata_proto::layer_store::{
    ReadBlobRequest, StatBlobRequest, WriteBlobRequest, WriteStart,
    layer_store_client::LayerStoreClient, write_blob_request::Part,
};
use strata_server::{ListenAddr, Listener, ServeOptions};
use strata_types::Digest;
use tonic::transport::Channel;

const MIB: usize = 1 << 20;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--serve") {
        return serve(PathBuf::from(&args[2]));
    }
    let flag = |name: &str, default: usize| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let gib = flag("--gib", 1);
    let small = flag("--small", 10_000);
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(bench(gib, small))
}

/// Server mode: serve a layer store on 127.0.0.1:0 and print the address.
fn serve(root: PathBuf) -> anyhow::Result<()> {
    // as the strata-layer-store binary does
    strata_server::tune_allocator(None);
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(async move {
            let listener = Listener::bind(&"127.0.0.1:0".parse()?).await?;
            println!("{}", listener.local_addr());
            std::io::stdout().flush()?;
            let config = strata_layer_store::Config {
                root,
                tag_index: None,
                // STRATA_LAYER_STORE_COMPRESSION=lz4 measures compression at rest
                compression: strata_layer_store::compression_from_env()?,
                leases_end_with_process: false,
            };
            strata_layer_store::run(
                config,
                listener,
                &ServeOptions::default(),
                strata_server::shutdown_signal(),
            )
            .await
        })
}

fn pseudo_random(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(n + 8);
    while out.len() < n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(n);
    out
}

fn vm_hwm_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

fn mib_s(bytes: usize, d: Duration) -> f64 {
    bytes as f64 / MIB as f64 / d.as_secs_f64()
}

async fn bench(gib: usize, small: usize) -> anyhow::Result<()> {
    let dir =
        tempfile::tempdir_in(std::env::var("BENCH_DIR").unwrap_or_else(|_| "/var/tmp".into()))?;
    let size = gib << 30;
    println!("generating {gib} GiB of pseudo-random bytes ...");
    let big = bytes::Bytes::from(pseudo_random(size, 0x5eed));
    let file = dir.path().join("big.bin");
    std::fs::write(&file, &*big)?;
    // warm the page cache, then time the floor
    Command::new("cat")
        .arg(&file)
        .stdout(Stdio::null())
        .status()?;
    let t = Instant::now();
    let out = Command::new("openssl")
        .args(["dgst", "-sha256"])
        .arg(&file)
        .output()?;
    let openssl = t.elapsed();
    anyhow::ensure!(out.status.success(), "openssl failed");
    let expected = Digest::of(&big);
    anyhow::ensure!(
        String::from_utf8_lossy(&out.stdout).contains(&expected.hex()),
        "openssl disagrees"
    );
    std::fs::remove_file(&file)?;
    let floor = mib_s(size, openssl);

    let mut child = Command::new(std::env::current_exe()?)
        .arg("--serve")
        .arg(dir.path().join("root"))
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .env("RUST_LOG", "warn")
        .spawn()?;
    let pid = child.id();
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout")).read_line(&mut line)?;
    let addr: ListenAddr = line.trim().parse()?;
    strata_test_support::wait_until_serving(&addr, Duration::from_secs(60)).await?;
    let channels: Vec<Channel> = (0..4)
        .map(|_| strata_server::client::lazy_channel(&addr))
        .collect::<Result<_, _>>()?;
    let client = |i: usize| {
        LayerStoreClient::new(channels[i % channels.len()].clone())
            .max_decoding_message_size(64 << 20)
            .max_encoding_message_size(64 << 20)
    };
    let rss_idle = vm_hwm_kib(pid);

    // one big blob
    let t = Instant::now();
    let messages = {
        let big = big.clone();
        let start = WriteBlobRequest {
            part: Some(Part::Start(WriteStart {
                expected_digest: expected.to_string(),
                expected_size: size as i64,
                media_type: strata_types::media_type::OCI_LAYER_TAR.into(),
                ..Default::default()
            })),
        };
        futures::stream::iter(
            std::iter::once(start).chain((0..size.div_ceil(MIB)).map(move |i| WriteBlobRequest {
                part: Some(Part::Data(big.slice(i * MIB..((i + 1) * MIB).min(size)))),
            })),
        )
    };
    let r = client(0).write_blob(messages).await?.into_inner();
    let write = t.elapsed();
    anyhow::ensure!(r.digest == expected.to_string(), "wrong digest back");
    let rss_ingest = vm_hwm_kib(pid);

    let t = Instant::now();
    let mut stream = client(0)
        .read_blob(ReadBlobRequest {
            digest: expected.to_string(),
            offset: 0,
            length: 0,
        })
        .await?
        .into_inner();
    let mut read_bytes = 0;
    let mut sample = bytes::Bytes::new();
    while let Some(m) = stream.message().await? {
        if read_bytes == size / 2 {
            sample = m.data.clone();
        }
        read_bytes += m.data.len();
    }
    let read = t.elapsed();
    anyhow::ensure!(read_bytes == size, "read {read_bytes} of {size}");
    anyhow::ensure!(
        sample[..] == big[size / 2..size / 2 + sample.len()],
        "read returned other bytes"
    );
    drop(big);

    // many small blobs, 64 clients
    let blobs: Arc<Vec<bytes::Bytes>> = Arc::new(
        (0..small)
            .map(|i| pseudo_random(4096, i as u64 + 1).into())
            .collect(),
    );
    const CLIENTS: usize = 64;
    let t = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..CLIENTS {
        let (mut c, blobs) = (client(w), blobs.clone());
        tasks.push(tokio::spawn(async move {
            for i in (w..blobs.len()).step_by(CLIENTS) {
                let msgs = vec![
                    WriteBlobRequest {
                        part: Some(Part::Start(WriteStart {
                            expected_digest: Digest::of(&blobs[i]).to_string(),
                            expected_size: 4096,
                            media_type: "application/octet-stream".into(),
                            ..Default::default()
                        })),
                    },
                    WriteBlobRequest {
                        part: Some(Part::Data(blobs[i].clone())),
                    },
                ];
                c.write_blob(futures::stream::iter(msgs)).await?;
            }
            anyhow::Ok(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    let small_writes = t.elapsed();

    let digests: Arc<Vec<String>> =
        Arc::new(blobs.iter().map(|b| Digest::of(b).to_string()).collect());
    let stats_total = small * 3;
    let t = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..CLIENTS {
        let (mut c, digests) = (client(w), digests.clone());
        tasks.push(tokio::spawn(async move {
            for i in (w..stats_total).step_by(CLIENTS) {
                let info = c
                    .stat_blob(StatBlobRequest {
                        digest: digests[i % digests.len()].clone(),
                        ..Default::default()
                    })
                    .await?
                    .into_inner();
                anyhow::ensure!(info.size == 4096);
            }
            anyhow::Ok(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    let stats = t.elapsed();
    let rss_end = vm_hwm_kib(pid);

    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGTERM,
    );
    let _ = child.wait();

    let w = mib_s(size, write);
    let rd = mib_s(size, read);
    let sw = small as f64 / small_writes.as_secs_f64();
    let st = stats_total as f64 / stats.as_secs_f64();
    println!();
    println!("| measure | result | target |");
    println!("|---|---|---|");
    println!(
        "| openssl dgst -sha256, {gib} GiB (floor) | {floor:.0} MiB/s ({:.2} s) | |",
        openssl.as_secs_f64()
    );
    println!(
        "| write {gib} GiB blob | {w:.0} MiB/s ({:.2} s) = {:.2}x floor | >= 0.6x |",
        write.as_secs_f64(),
        w / floor
    );
    println!(
        "| read {gib} GiB blob | {rd:.0} MiB/s ({:.2} s) = {:.2}x floor | >= 1.0x |",
        read.as_secs_f64(),
        rd / floor
    );
    println!("| {small} x 4 KiB writes, {CLIENTS} clients | {sw:.0} writes/s | >= 5,000/s |");
    println!("| {stats_total} stats, {CLIENTS} clients | {st:.0} stats/s | >= 20,000/s |");
    println!(
        "| server peak RSS (VmHWM) idle / after ingest / at end | {} / {} / {} MiB | <= 128 MiB while ingesting |",
        rss_idle / 1024,
        rss_ingest / 1024,
        rss_end / 1024
    );
    Ok(())
}
