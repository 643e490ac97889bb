//! The soak: one long campaign through the 3-node test cluster with three `herald worker`s,
//! `herald serve` on PostgreSQL and the simulator (50 ms answers, delivery and read receipts,
//! echoes), nothing failing, while the resident memory of every Herald process is sampled
//! twice a second. At the end every user was sent exactly once, and each process stayed under
//! its stated ceiling and flat: its peak in the second half of its life is no more than a fifth
//! (at least 8 MiB) above its peak in the first half, so memory that grows with the campaign
//! fails it. The producer is the one process meant to grow: it remembers a 64-bit hash of
//! every external id it planned, to skip duplicate rows, so it may grow by 32 bytes a user (the
//! hash set's spare capacity included) on top of that.
//!
//! CI runs 20,000 users at 2,000/s; `scripts/soak` runs 1,000,000 (`HERALD_SOAK_USERS`,
//! `HERALD_SOAK_RATE`) with release binaries.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use herald_tests::bench::rss_kib;

use crate::cluster::cluster_url;
use crate::fleet::{Fleet, Options};

/// The memory each kind of process stays under (README, "The soak"), in MiB.
fn ceiling_mib(name: &str) -> u64 {
    match name {
        "serve" => 128,
        "producer" => 100,
        _ => 64,
    }
}

/// Resident memory samples of one process, in KiB, oldest first.
struct Trace {
    name: String,
    pid: u32,
    samples: Vec<u64>,
}

impl Trace {
    /// The peaks of the first and the second half of the samples.
    fn halves(&self) -> (u64, u64) {
        let (early, late) = self.samples.split_at(self.samples.len() / 2);
        let peak = |part: &[u64]| part.iter().copied().max().unwrap_or(0);
        (peak(early), peak(late))
    }
}

/// Samples every process it is given until dropped.
struct Sampler {
    traces: Arc<Mutex<Vec<Trace>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Sampler {
    fn start(processes: Vec<(String, u32)>) -> Self {
        let traces: Vec<Trace> = processes
            .into_iter()
            .map(|(name, pid)| Trace {
                name,
                pid,
                samples: Vec::new(),
            })
            .collect();
        let traces = Arc::new(Mutex::new(traces));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = std::thread::spawn({
            let (traces, stop) = (Arc::clone(&traces), Arc::clone(&stop));
            move || {
                while !stop.load(Ordering::Relaxed) {
                    for trace in traces.lock().expect("traces").iter_mut() {
                        // 0 once the process is gone (the producer, when it is done).
                        let kib = rss_kib(trace.pid);
                        if kib > 0 {
                            trace.samples.push(kib);
                        }
                    }
                    std::thread::sleep(Duration::from_millis(500));
                }
            }
        });
        Self {
            traces,
            stop,
            thread: Some(thread),
        }
    }

    fn watch(&self, name: &str, pid: u32) {
        self.traces.lock().expect("traces").push(Trace {
            name: name.to_owned(),
            pid,
            samples: Vec::new(),
        });
    }

    fn finish(mut self) -> Vec<Trace> {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            thread.join().expect("sampler");
        }
        std::mem::take(&mut *self.traces.lock().expect("traces"))
    }
}

impl Drop for Sampler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

#[tokio::test]
async fn a_long_campaign_runs_in_flat_memory() {
    let _serial = crate::SERIAL.lock().await;
    let Some(url) = cluster_url() else {
        return;
    };
    herald_tests::postgres::in_new_schema(|database| async move {
        let options = Options::on_cluster(
            "test-soak",
            database,
            url,
            ("HERALD_SOAK_USERS", 20_000),
            ("HERALD_SOAK_RATE", 2_000),
        );
        let (users, rate) = (options.users, options.rate);
        let Some(fleet) = Fleet::start(options).await else {
            return;
        };
        let started = Instant::now();
        let sampler = Sampler::start(fleet.processes());
        let (mut producer, run) = fleet.producer(&[]);
        sampler.watch("producer", producer.id());
        let deadline = Instant::now() + Duration::from_secs(users / u64::from(rate) * 3 + 300);
        let mut last_report = Instant::now();
        while fleet.sim.stats().accepted < users {
            assert!(
                Instant::now() < deadline,
                "the campaign never finished ({} of {users})",
                fleet.sim.stats().accepted
            );
            if last_report.elapsed() >= Duration::from_secs(30) {
                eprintln!(
                    "soak: {} of {users} sent after {:.0} s",
                    fleet.sim.stats().accepted,
                    started.elapsed().as_secs_f64()
                );
                last_report = Instant::now();
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        let status = producer.wait().expect("producer");
        assert!(status.success(), "the producer exited {status}");
        fleet.expect_everyone_once(&run).await;
        let counts = fleet.final_counts("soak", &run, started.elapsed()).await;
        assert_eq!((counts.failed, counts.skipped), (0, 0), "{counts:?}");

        let traces = sampler.finish();
        eprintln!("process      samples  first-half peak  second-half peak  ceiling");
        let mut faults = Vec::new();
        for trace in &traces {
            let (early, late) = trace.halves();
            let ceiling = ceiling_mib(&trace.name);
            let mib = |kib: u64| kib as f64 / 1024.0;
            eprintln!(
                "{:<12} {:>7}  {:>12.1} MB  {:>13.1} MB  {ceiling:>4} MB",
                trace.name,
                trace.samples.len(),
                mib(early),
                mib(late)
            );
            if early.max(late) > ceiling * 1024 {
                faults.push(format!("{} went over {ceiling} MB", trace.name));
            }
            let planned_ids = if trace.name == "producer" {
                users * 32 / 1024
            } else {
                0
            };
            if late > early + (early / 5).max(8 * 1024) + planned_ids {
                faults.push(format!("{} kept growing", trace.name));
            }
            if trace.samples.is_empty() {
                faults.push(format!("{} was never sampled", trace.name));
            }
        }
        assert!(faults.is_empty(), "{faults:?}");
        fleet.stop().await;
    })
    .await;
}
