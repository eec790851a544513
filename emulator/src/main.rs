//! `ib-emulator` binary: runs the EC2 Image Builder emulator on 127.0.0.1 until SIGINT or
//! SIGTERM. Prints exactly one line, `listening on 127.0.0.1:PORT`, to stdout once ready, so
//! scripts can wait for it; everything else goes to stderr. With `--ec2-upstream`, it also
//! runs the EC2 front in front of moto and then prints `ec2 listening on 127.0.0.1:PORT`.

use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr};
use std::process::ExitCode;

use ib_emulator::ec2::Ec2Latency;
use ib_emulator::{Ec2Front, Emulator, Faults, RateLimit, SeedImage};

const USAGE: &str = "\
ib-emulator: local EC2 Image Builder emulator (REST-JSON, imagebuilder 2019-12-02)

USAGE:
    ib-emulator [OPTIONS]

OPTIONS:
    --port N             port on 127.0.0.1 (default 0 = any free port)
    --seed FILE          JSON array of images:
                         [{\"arn\", \"state\"?, \"tags\"?, \"outputResources\"?, \"dateCreated\"?}]
    --latency-ms N       fixed latency per API call
    --jitter-ms N        extra uniform latency 0..=N per call
    --throttle-rate F    fraction of calls answered 429 CallRateLimitExceededException
    --error-rate F       fraction of calls answered 500 ServiceException / 503 ServiceUnavailableException
    --max-rps F          token-bucket request rate limit over all operations; excess answered 429
    --rate-limit OP=RATE[/BURST]
                         token bucket for one operation (e.g. DeleteImage=100/10), shared by
                         all callers; BURST defaults to one second's worth; repeatable
    --implicit-images    every valid build-version ARN not yet deleted exists
    --verbose            log every call to stderr
    --ec2-upstream URL   also run the EC2 front, forwarding to moto at URL (http://HOST:PORT)
    --ec2-port N         the EC2 front's port on 127.0.0.1 (default 0 = any free port)
    --ec2-latency-ms N   fixed latency per EC2 request at the front (answered there or
                         passed through to moto alike; on top of moto's own time)
    --ec2-latency OP=MS  latency for one EC2 operation (Action), replacing --ec2-latency-ms
                         for it (e.g. DescribeImageReferences=0); repeatable
    -h, --help           this text

Point SDK clients at it with AWS_ENDPOINT_URL_IMAGEBUILDER=http://127.0.0.1:PORT.
Control API (no auth): /_emulator/{health,images,history,faults,script,calls,stats,reset-stats}.
EC2 front: AWS_ENDPOINT_URL_EC2=http://127.0.0.1:PORT; control API /_ec2/{health,images,
references,faults,calls,stats,reset-stats}.
";

struct Options {
    port: u16,
    seed: Option<String>,
    faults: Faults,
    verbose: bool,
    ec2_upstream: Option<String>,
    ec2_port: Option<u16>,
    ec2_latency: Ec2Latency,
}

fn parse_args(args: impl Iterator<Item = String>) -> Result<Option<Options>, String> {
    let mut opts = Options {
        port: 0,
        seed: None,
        faults: Faults::default(),
        verbose: false,
        ec2_upstream: None,
        ec2_port: None,
        ec2_latency: Ec2Latency::default(),
    };
    let mut args = args.peekable();
    while let Some(arg) = args.next() {
        // Accept both `--flag value` and `--flag=value`.
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
            _ => (arg.clone(), None),
        };
        let mut value = |name: &str| -> Result<String, String> {
            inline
                .clone()
                .or_else(|| args.next())
                .ok_or_else(|| format!("{name} needs a value"))
        };
        fn num<T: std::str::FromStr>(flag: &str, v: String) -> Result<T, String> {
            v.parse()
                .map_err(|_| format!("{flag}: not a valid number: {v:?}"))
        }
        match flag.as_str() {
            "-h" | "--help" => return Ok(None),
            "--port" => opts.port = num(&flag, value(&flag)?)?,
            "--seed" => opts.seed = Some(value(&flag)?),
            "--latency-ms" => opts.faults.latency_ms = num(&flag, value(&flag)?)?,
            "--jitter-ms" => opts.faults.jitter_ms = num(&flag, value(&flag)?)?,
            "--throttle-rate" => opts.faults.throttle_rate = rate(&flag, value(&flag)?)?,
            "--error-rate" => opts.faults.error_rate = rate(&flag, value(&flag)?)?,
            "--max-rps" => {
                let r: f64 = num(&flag, value(&flag)?)?;
                if !(r > 0.0 && r.is_finite()) {
                    return Err("--max-rps must be a positive number".into());
                }
                opts.faults.max_rps = Some(r);
            }
            "--rate-limit" => {
                let (op, limit) = rate_limit(&value(&flag)?)?;
                opts.faults.rate_limits.insert(op, limit);
            }
            "--implicit-images" => opts.faults.implicit_images = true,
            "--verbose" | "-v" => opts.verbose = true,
            "--ec2-upstream" => opts.ec2_upstream = Some(value(&flag)?),
            "--ec2-port" => opts.ec2_port = Some(num(&flag, value(&flag)?)?),
            "--ec2-latency-ms" => opts.ec2_latency.default_ms = num(&flag, value(&flag)?)?,
            "--ec2-latency" => {
                let (op, ms) = operation_latency(&value(&flag)?)?;
                opts.ec2_latency.by_operation.insert(op, ms);
            }
            other => return Err(format!("unknown argument {other:?} (see --help)")),
        }
    }
    if opts.ec2_upstream.is_none() {
        if opts.ec2_port.is_some() {
            return Err("--ec2-port needs --ec2-upstream".into());
        }
        if opts.ec2_latency != Ec2Latency::default() {
            return Err("--ec2-latency-ms / --ec2-latency need --ec2-upstream".into());
        }
    }
    Ok(Some(opts))
}

fn rate(flag: &str, v: String) -> Result<f64, String> {
    match v.parse::<f64>() {
        Ok(r) if (0.0..=1.0).contains(&r) => Ok(r),
        _ => Err(format!(
            "{flag}: expected a fraction between 0 and 1, got {v:?}"
        )),
    }
}

/// Parses `OP=RATE[/BURST]`: RATE ≥ 0 per second, BURST ≥ 0 (default one second's worth,
/// at least 1).
fn rate_limit(v: &str) -> Result<(String, RateLimit), String> {
    let usage = || format!("--rate-limit: expected OP=RATE[/BURST], got {v:?}");
    let (op, spec) = v.split_once('=').ok_or_else(usage)?;
    let (rate, burst) = match spec.split_once('/') {
        Some((r, b)) => (r, Some(b)),
        None => (spec, None),
    };
    let number = |s: &str| s.parse::<f64>().ok().filter(|n| n.is_finite() && *n >= 0.0);
    let rate = number(rate).ok_or_else(usage)?;
    let mut limit = RateLimit::per_second(rate);
    if let Some(b) = burst {
        limit.burst = number(b).ok_or_else(usage)?;
    }
    if op.is_empty() {
        return Err(usage());
    }
    Ok((op.to_string(), limit))
}

/// Parses `OP=MS`: an EC2 operation name and whole milliseconds.
fn operation_latency(v: &str) -> Result<(String, u64), String> {
    let usage =
        || format!("--ec2-latency: expected OP=MS (e.g. DescribeImageReferences=0), got {v:?}");
    let (op, ms) = v.split_once('=').ok_or_else(usage)?;
    if op.is_empty() {
        return Err(usage());
    }
    let ms = ms.parse::<u64>().map_err(|_| usage())?;
    Ok((op.to_string(), ms))
}

fn load_seed(path: &str) -> Result<Vec<SeedImage>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("--seed {path}: {e}"))?;
    serde_json::from_str(&text)
        .map_err(|e| format!("--seed {path}: expected a JSON array of images: {e}"))
}

#[tokio::main]
async fn main() -> ExitCode {
    let opts = match parse_args(std::env::args().skip(1)) {
        Ok(Some(o)) => o,
        Ok(None) => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("ib-emulator: {e}");
            return ExitCode::from(2);
        }
    };
    let emulator = Emulator::new(opts.faults);
    emulator.set_verbose(opts.verbose);
    if let Some(path) = &opts.seed {
        match load_seed(path) {
            Ok(images) => emulator.seed(images),
            Err(e) => {
                eprintln!("ib-emulator: {e}");
                return ExitCode::from(2);
            }
        }
    }
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, opts.port));
    let bound = match emulator.start(addr).await {
        Ok(a) => a,
        Err(e) => {
            eprintln!("ib-emulator: cannot listen on {addr}: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!("listening on {bound}");
    let _ = std::io::stdout().flush();
    // Kept alive until exit: the front serves on the runtime's tasks.
    let _ec2 = match &opts.ec2_upstream {
        None => None,
        Some(upstream) => {
            let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, opts.ec2_port.unwrap_or(0)));
            match Ec2Front::start_with_latency(upstream, addr, opts.ec2_latency.clone()).await {
                Ok(front) => {
                    println!("ec2 listening on {}", front.addr());
                    let _ = std::io::stdout().flush();
                    Some(front)
                }
                Err(e) => {
                    eprintln!("ib-emulator: cannot start the EC2 front on {addr}: {e}");
                    return ExitCode::FAILURE;
                }
            }
        }
    };

    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("ib-emulator: cannot install SIGTERM handler: {e}");
            return ExitCode::FAILURE;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    if opts.verbose {
        eprintln!("ib-emulator: shutting down");
    }
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_limit_flags_parse_and_repeat() {
        // GIVEN two --rate-limit flags, with and without a burst
        let args = [
            "--rate-limit",
            "DeleteImage=100/10",
            "--rate-limit=GetImage=0.5",
        ];
        // WHEN parsed
        let opts = parse_args(args.iter().map(|s| s.to_string()))
            .unwrap()
            .unwrap();
        // THEN each operation has its bucket; a missing burst is one second's worth (≥ 1)
        let limits = &opts.faults.rate_limits;
        assert_eq!(
            limits["DeleteImage"],
            RateLimit {
                rate: 100.0,
                burst: 10.0
            }
        );
        assert_eq!(
            limits["GetImage"],
            RateLimit {
                rate: 0.5,
                burst: 1.0
            }
        );
        // AND malformed values are refused with the expected form
        for bad in [
            "DeleteImage",
            "=5",
            "DeleteImage=-1",
            "DeleteImage=5/x",
            "X=nan",
        ] {
            let e = parse_args(["--rate-limit", bad].iter().map(|s| s.to_string()));
            assert!(e.is_err_and(|m| m.contains("OP=RATE")), "{bad}");
        }
    }

    #[test]
    fn ec2_latency_flags_parse_repeat_and_need_the_front() {
        // GIVEN a default EC2 latency and two per-operation values
        let args = [
            "--ec2-upstream",
            "http://127.0.0.1:5000",
            "--ec2-latency-ms",
            "20",
            "--ec2-latency",
            "DescribeImageReferences=0",
            "--ec2-latency=DescribeImageAttribute=5",
        ];
        // WHEN parsed
        let opts = parse_args(args.iter().map(|s| s.to_string()))
            .unwrap()
            .unwrap();
        // THEN each operation has its own value and the rest the default
        let l = &opts.ec2_latency;
        assert_eq!(l.default_ms, 20);
        assert_eq!(l.by_operation["DescribeImageReferences"], 0);
        assert_eq!(l.by_operation["DescribeImageAttribute"], 5);
        assert_eq!(l.of("DescribeImages").as_millis(), 20);
        // AND malformed values are refused with the expected form
        for bad in [
            "DescribeImages",
            "=5",
            "DescribeImages=-1",
            "X=1.5",
            "X=soon",
        ] {
            let e = parse_args(
                ["--ec2-upstream", "http://127.0.0.1:1", "--ec2-latency", bad]
                    .iter()
                    .map(|s| s.to_string()),
            );
            assert!(e.is_err_and(|m| m.contains("OP=MS")), "{bad}");
        }
        // AND without the front there is nothing to delay
        let e = parse_args(["--ec2-latency-ms", "20"].iter().map(|s| s.to_string()));
        assert!(e.is_err_and(|m| m.contains("--ec2-upstream")));
    }
}
