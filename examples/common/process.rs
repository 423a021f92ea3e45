//! The Lambda binary as the benchmarks run it: spawned under the Runtime API emulator with
//! Lambda's environment, and its peak memory read from `/proc`.

use std::process::Stdio;

use ghl_csv_finalize::local::runtime_api::RuntimeApi;
use tokio::process::{Child, Command};

/// Peak resident memory (VmHWM) of process `pid`, in KiB.
pub fn vm_hwm_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// CPU time process `pid` has used so far: its threads' time on a CPU, in nanoseconds, from
/// `/proc/PID/task/*/schedstat` (`/proc/PID/stat` counts in 10 ms ticks, too coarse for a
/// finalize's fraction of a millisecond). Only threads alive now count: the runtime's thread,
/// and tokio's blocking pool only after a DNS lookup (the benchmarks' addresses are IP literals,
/// so none). A kernel without schedstats reads as zero.
#[allow(dead_code, reason = "the cold-start benchmark measures no CPU time")]
pub fn cpu_time(pid: u32) -> std::time::Duration {
    let nanos: u64 = std::fs::read_dir(format!("/proc/{pid}/task"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|task| std::fs::read_to_string(task.path().join("schedstat")).ok())
        .filter_map(|stat| stat.split_whitespace().next()?.parse::<u64>().ok())
        .sum();
    std::time::Duration::from_nanos(nanos)
}

pub fn spawn(binary: &str, runtime: &RuntimeApi, env: &[(String, String)]) -> Child {
    let mut command = Command::new(binary);
    command
        .env_clear()
        .env("AWS_LAMBDA_RUNTIME_API", runtime.address())
        .env("AWS_LAMBDA_FUNCTION_NAME", "ghl-csv-finalize")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .env("AWS_LAMBDA_LOG_STREAM_NAME", "bench")
        .env("AWS_LAMBDA_LOG_GROUP_NAME", "/aws/lambda/bench")
        .env("AWS_LAMBDA_LOG_FORMAT", "JSON")
        .env("AWS_LAMBDA_LOG_LEVEL", "WARN")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "bench")
        .env("AWS_SECRET_ACCESS_KEY", "bench")
        .env("AWS_SESSION_TOKEN", "bench")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .kill_on_drop(true);
    for (key, value) in env {
        command.env(key, value);
    }
    command.spawn().expect("the binary starts")
}
