//! Job backend benchmarks (Linux, root, writable cgroups; skipped otherwise).
//!
//! * `job/create_and_spawn`: create a job and start a process in it; the clock stops when
//!   `spawn` has returned, i.e. the program has been exec'd inside the job's cgroups. Checking
//!   the pid is in the job and destroying the job are not timed.
//! * `job/teardown_101_processes`: a job holding a shell and 100 sleeping children (built and
//!   awaited untimed); timed: `terminate` + `wait_empty` + `destroy`.
//!
//! Run: `CARGO_TARGET_DIR=/tmp/target-agent cargo bench -p hostgate-agent --bench job`;
//! medians are in `/tmp/target-agent/criterion/job/*/new/estimates.json`.

use std::time::{Duration, Instant};

use criterion::{Criterion, SamplingMode, criterion_group, criterion_main};

#[cfg(target_os = "linux")]
fn benches(c: &mut Criterion) {
    use std::sync::atomic::{AtomicU64, Ordering};

    use hostgate_agent::job::sys::{CgroupConfig, CgroupJobManager};
    use hostgate_agent::job::{Job, JobLimits, JobManager, JobName, JobProcess, ProcessSpec};

    if !nix::unistd::geteuid().is_root() {
        eprintln!("job benchmarks skipped: need root");
        return;
    }
    let manager = match CgroupJobManager::new(CgroupConfig {
        parent: "hostgate-bench".into(),
        ..CgroupConfig::default()
    }) {
        Ok(m) => m,
        Err(err) => {
            eprintln!("job benchmarks skipped: {err}");
            return;
        }
    };
    let counter = AtomicU64::new(0);
    let next_name = || {
        let n = counter.fetch_add(1, Ordering::Relaxed);
        JobName::new(format!("bench-{}-{n}", std::process::id())).expect("valid name")
    };
    let limits = JobLimits::from_kubernetes(500, 256 << 20, manager.host_logical_processors());

    let mut group = c.benchmark_group("job");
    group.sampling_mode(SamplingMode::Flat);
    group.sample_size(30);
    group.warm_up_time(Duration::from_millis(500));
    group.measurement_time(Duration::from_secs(3));

    group.bench_function("create_and_spawn", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let name = next_name();
                let start = Instant::now();
                let job = manager.create(&name, &limits).expect("create");
                let mut p = job
                    .spawn(ProcessSpec::new("/bin/sleep").arg("1000"))
                    .expect("spawn");
                total += start.elapsed();
                assert!(job.pids().expect("pids").contains(&p.pid()));
                job.destroy().expect("destroy");
                p.wait().expect("reap");
            }
            total
        });
    });

    group.sample_size(10);
    group.bench_function("teardown_101_processes", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let job = manager
                    .create(&next_name(), &JobLimits::default())
                    .expect("create");
                let mut init = job
                    .spawn(ProcessSpec::new("/bin/sh").args([
                        "-c",
                        "i=0; while [ $i -lt 100 ]; do /bin/sleep 1000 & i=$((i+1)); done; wait",
                    ]))
                    .expect("spawn");
                let deadline = Instant::now() + Duration::from_secs(30);
                while job.pids().expect("pids").len() != 101 {
                    assert!(Instant::now() < deadline, "tree did not start");
                    std::thread::sleep(Duration::from_millis(1));
                }
                let start = Instant::now();
                job.terminate().expect("terminate");
                assert!(job.wait_empty(Duration::from_secs(10)).expect("wait_empty"));
                job.destroy().expect("destroy");
                total += start.elapsed();
                init.wait().expect("reap");
            }
            total
        });
    });
    group.finish();
}

#[cfg(not(target_os = "linux"))]
fn benches(_: &mut Criterion) {
    eprintln!("job benchmarks only run on Linux");
}

criterion_group!(job, benches);
criterion_main!(job);
