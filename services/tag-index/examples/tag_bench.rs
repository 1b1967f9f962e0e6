//! Load generator for the tag index over gRPC on loopback, with RocksDB's own point get and
//! synced put measured in the same run as the floor.
//!
//! ```text
//! cargo run -p strata-tag-index --example tag_bench -- [--seconds 5] [--streams 64] [--connections 4] [--tags 1000]
//! ```
//!
//! The service runs in this process over RocksDB in a temp dir, on 127.0.0.1; clients share
//! the machine's cores with it, as a sidecar load generator would.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use strata_kv::{Durability, KvStore, RocksStore, Space};
use strata_proto::tag_index::{ResolveTagRequest, SetTagRequest, tag_index_client::TagIndexClient};
use strata_server::{Listener, ServeOptions};
use strata_types::Digest;
use tonic::transport::Channel;

#[derive(Debug, Clone)]
struct Settings {
    seconds: u64,
    streams: usize,
    connections: usize,
    tags: usize,
}

fn settings() -> Settings {
    let mut s = Settings {
        seconds: 5,
        streams: 64,
        connections: 4,
        tags: 1000,
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    for pair in args.chunks(2) {
        let value = pair.get(1).and_then(|v| v.parse().ok());
        match (pair[0].as_str(), value) {
            ("--seconds", Some(v)) => s.seconds = v as u64,
            ("--streams", Some(v)) => s.streams = v,
            ("--connections", Some(v)) => s.connections = v.max(1),
            ("--tags", Some(v)) => s.tags = v.max(1),
            (flag, _) => {
                eprintln!(
                    "usage: tag_bench [--seconds N] [--streams N] [--connections N] [--tags N] (bad: {flag})"
                );
                std::process::exit(2);
            }
        }
    }
    s
}

/// Throughput and latency of one phase.
struct Figures {
    ops: usize,
    elapsed: Duration,
    p50: Duration,
    p99: Duration,
}

impl Figures {
    fn rate(&self) -> f64 {
        self.ops as f64 / self.elapsed.as_secs_f64()
    }

    fn from(mut latencies: Vec<Duration>, elapsed: Duration) -> Self {
        latencies.sort_unstable();
        let at = |q: f64| {
            latencies
                .get(((latencies.len() as f64 * q) as usize).min(latencies.len().saturating_sub(1)))
                .copied()
                .unwrap_or_default()
        };
        Self {
            ops: latencies.len(),
            elapsed,
            p50: at(0.50),
            p99: at(0.99),
        }
    }

    fn print(&self, what: &str, unit: &str) {
        println!(
            "{what:<44} {:>10.0} {unit}/s   p50 {:>8.3} ms   p99 {:>8.3} ms   ({} in {:.1} s)",
            self.rate(),
            self.p50.as_secs_f64() * 1e3,
            self.p99.as_secs_f64() * 1e3,
            self.ops,
            self.elapsed.as_secs_f64()
        );
    }
}

fn tag_name(i: usize) -> String {
    format!("localhost:5000/bench/app:t{i}")
}

fn digest(i: u64) -> String {
    Digest::of(&i.to_be_bytes()).to_string()
}

/// Runs `op` on `streams` concurrent tasks over `channels` until `seconds` pass.
async fn load<F, Fut>(channels: &[Channel], streams: usize, seconds: u64, op: F) -> Figures
where
    F: Fn(TagIndexClient<Channel>, usize, u64) -> Fut + Send + Sync + 'static + Clone,
    Fut: std::future::Future<Output = ()> + Send,
{
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let tasks: Vec<_> = (0..streams)
        .map(|s| {
            let client = TagIndexClient::new(channels[s % channels.len()].clone());
            let (stop, op) = (stop.clone(), op.clone());
            tokio::spawn(async move {
                let mut latencies = Vec::with_capacity(1 << 16);
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let t = Instant::now();
                    op(client.clone(), s, i).await;
                    latencies.push(t.elapsed());
                    i += 1;
                }
                latencies
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    stop.store(true, Ordering::Relaxed);
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.expect("load task"));
    }
    Figures::from(all, started.elapsed())
}

/// RocksDB through strata-kv directly: point gets on `threads` threads, then synced puts.
fn floor(settings: &Settings) -> (Figures, Figures, Figures) {
    const S: Space = Space::small("tags");
    let dir = tempfile::tempdir().expect("tempdir");
    let kv = Arc::new(RocksStore::open(dir.path(), &[S]).expect("open rocksdb"));
    let value = vec![b'x'; 120];
    for i in 0..settings.tags {
        kv.put(S, tag_name(i).as_bytes(), &value, Durability::Buffered)
            .expect("put");
    }
    let run = |threads: usize, seconds: f64, f: Arc<dyn Fn(usize, u64) + Send + Sync>| {
        let stop = Arc::new(AtomicBool::new(false));
        let started = Instant::now();
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let (stop, f) = (stop.clone(), f.clone());
                std::thread::spawn(move || {
                    let mut lat = Vec::with_capacity(1 << 16);
                    let mut i = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        let s = Instant::now();
                        f(t, i);
                        lat.push(s.elapsed());
                        i += 1;
                    }
                    lat
                })
            })
            .collect();
        std::thread::sleep(Duration::from_secs_f64(seconds));
        stop.store(true, Ordering::Relaxed);
        let mut all = Vec::new();
        for h in handles {
            all.extend(h.join().expect("floor thread"));
        }
        Figures::from(all, started.elapsed())
    };
    let tags = settings.tags;
    let secs = settings.seconds as f64;
    let k = kv.clone();
    let gets = run(
        2,
        secs,
        Arc::new(move |t, i| {
            let key = tag_name((i as usize * 7 + t) % tags);
            std::hint::black_box(k.get(S, key.as_bytes()).expect("get"));
        }),
    );
    let k = kv.clone();
    let v = value.clone();
    let puts = run(
        1,
        secs,
        Arc::new(move |_, i| {
            k.put(
                S,
                tag_name(i as usize % tags).as_bytes(),
                &v,
                Durability::Sync,
            )
            .expect("put");
        }),
    );
    let k = kv.clone();
    let puts_concurrent = run(
        settings.streams,
        secs,
        Arc::new(move |t, i| {
            let key = tag_name((t * 131 + i as usize) % tags);
            k.put(S, key.as_bytes(), &value, Durability::Sync)
                .expect("put");
        }),
    );
    (gets, puts, puts_concurrent)
}

fn main() -> anyhow::Result<()> {
    let settings = settings();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(bench(settings))
}

async fn bench(settings: Settings) -> anyhow::Result<()> {
    println!(
        "tag_bench: {} s per phase, {} streams over {} connections, {} tags, {} cores",
        settings.seconds,
        settings.streams,
        settings.connections,
        settings.tags,
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    let root = tempfile::tempdir()?;
    // every move checks its target in the layer store: here a stand-in holding every digest
    // as an image, over loopback like a farm's (the figures include that round trip)
    let layer_store = strata_test_support::FakeLayerStore::holding_every_image()
        .spawn()
        .await;
    let service = strata_tag_index::open(&strata_tag_index::Config::new(
        root.path().to_path_buf(),
        layer_store.addr.clone().into(),
    ))?;
    let listener = Listener::bind(&"127.0.0.1:0".parse()?).await?;
    let addr = listener.local_addr();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        strata_tag_index::serve(service, listener, &ServeOptions::default(), async {
            let _ = stop_rx.await;
        })
        .await
    });
    let mut channels = Vec::new();
    for _ in 0..settings.connections {
        // connected eagerly, each its own HTTP/2 connection
        let uri = format!("http://{addr}");
        channels.push(
            tonic::transport::Endpoint::from_shared(uri)?
                .tcp_nodelay(true)
                .connect()
                .await?,
        );
    }

    // seed
    let mut seed = TagIndexClient::new(channels[0].clone());
    for i in 0..settings.tags {
        seed.set_tag(SetTagRequest {
            name: tag_name(i),
            digest: digest(i as u64),
            expected_digest: None,
        })
        .await?;
    }

    let tags = settings.tags;
    let resolve = load(
        &channels,
        settings.streams,
        settings.seconds,
        move |mut c, s, i| async move {
            let name = tag_name((s * 7919 + i as usize) % tags);
            c.resolve_tag(ResolveTagRequest { name })
                .await
                .expect("resolve");
        },
    )
    .await;
    let set = load(
        &channels,
        settings.streams,
        settings.seconds,
        move |mut c, s, i| async move {
            let name = tag_name((s * 131 + i as usize) % tags);
            c.set_tag(SetTagRequest {
                name,
                digest: digest(1_000_000 + (s as u64) * 1_000_000 + i),
                expected_digest: None,
            })
            .await
            .expect("set");
        },
    )
    .await;
    let set_one = load(
        &channels[..1],
        1,
        settings.seconds,
        move |mut c, _, i| async move {
            c.set_tag(SetTagRequest {
                name: tag_name(0),
                digest: digest(u64::MAX - i),
                expected_digest: None,
            })
            .await
            .expect("set");
        },
    )
    .await;
    let _ = stop_tx.send(());
    server.await??;

    let (gets, puts, puts_concurrent) = tokio::task::spawn_blocking({
        let s = settings.clone();
        move || floor(&s)
    })
    .await?;

    println!();
    resolve.print(
        &format!("gRPC ResolveTag, {} streams", settings.streams),
        "req",
    );
    set.print(
        &format!("gRPC SetTag (synced), {} streams", settings.streams),
        "moves",
    );
    set_one.print("gRPC SetTag (synced), 1 stream", "moves");
    gets.print("floor: RocksDB point get, 2 threads", "gets");
    puts.print("floor: RocksDB synced put, 1 thread", "puts");
    puts_concurrent.print(
        &format!("floor: RocksDB synced put, {} threads", settings.streams),
        "puts",
    );
    println!();
    println!(
        "ratio resolve / RocksDB get:                 {:.3}",
        resolve.rate() / gets.rate()
    );
    println!(
        "ratio set ({} streams) / synced put (1 thread): {:.2}",
        settings.streams,
        set.rate() / puts.rate()
    );
    println!(
        "ratio set ({} streams) / synced put ({} threads): {:.2}",
        settings.streams,
        settings.streams,
        set.rate() / puts_concurrent.rate()
    );
    println!(
        "targets: resolve >= 20000 req/s: {}; set >= 1000 moves/s: {}",
        if resolve.rate() >= 20_000.0 {
            "met"
        } else {
            "NOT met"
        },
        if set.rate() >= 1_000.0 {
            "met"
        } else {
            "NOT met"
        }
    );
    Ok(())
}
