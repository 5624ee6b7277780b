//! `hornbeam_bench SCENARIO [--option value ...]`: runs one scenario against
//! one server and prints one JSON object on stdout. See `--help`.

use hornbeam_bench::args::Args;
use hornbeam_bench::scenarios::{fanout, idle, presence, roundtrip, soak, Report};

const HELP: &str = "\
usage: hornbeam_bench SCENARIO [--option value ...]

Runs one scenario against one WebSocket server; prints one JSON object on stdout
({\"scenario\", \"server\", \"proto\", \"status\": ok|not_supported|error, \"params\", \"figures\"}).

scenarios:
  fanout     S subscribers on one topic, one publisher; delivered msgs/s, publish->receive latency, loss
             --subscribers S (100) --messages M (100) --window W (2, closed loop) | --rate R (open loop, msgs/s)
             --duration-ms D (publish at most this long; 0 = no cap) --size BYTES (32)
             --drain-ms (5000) --message-timeout-ms (2000)
  roundtrip  C clients each pushing an event the server replies to; replies/s, latency
             --clients C (10) --duration-ms (5000) --warmup-ms (1000) --event (ping) --size (32)
  idle       N connections that only heartbeat; connections/s while opening, server RSS per connection
             --conns N (1000) --hold-ms (10000) --settle-ms (2000) --join true|false (true)
  presence   N clients join one topic and are tracked; time until every view holds all N, server bytes
             --clients N (100) --timeout-ms (30000)
  soak       users chatting with presence on a cluster while bench/soak.py injects faults (Phoenix only)
             --urls ws://A,ws://B (one per node) --users (2000) --room-size (10) --duration-ms (60000)
             --interval-ms (5000) --publish-pct (50) --churn-permille (10) --call-timeout-ms (10000)
             --ramp-ms (10000) --settle-ms (30000) --state-file PATH (then hold until stdin closes)
             --hold-max-ms (120000) --topic-prefix (room:soak-; topic = prefix + room number) --seed (1)

common options:
  --proto phoenix|socketio|json (phoenix)   --url ws://HOST:PORT (ws://127.0.0.1:4000)
  --path PATH (per protocol: /ws/websocket?vsn=2.0.0 | /socket.io/?EIO=4&transport=websocket | /ws)
  --server NAME (label in the output)       --server-pid PID[,PID] (RSS/CPU of these and their children)
  --topic T (room:bench)                    --src-ips 127.0.0.2-127.0.0.9 (source addresses, or none)
  --concurrency N (200 handshakes in flight) --connect-timeout-ms (30000) --heartbeat-ms (25000)
  --threads N (tokio worker threads; default: the CPUs this process may run on)
";

fn main() {
    hornbeam_bench::clock::init();
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let Some(scenario) = argv.first().cloned() else {
        eprint!("{HELP}");
        std::process::exit(2);
    };
    if scenario == "--help" || scenario == "-h" || scenario == "help" {
        print!("{HELP}");
        return;
    }
    let args = match Args::parse(&argv[1..]) {
        Ok(a) => a,
        Err(e) => fail(&e),
    };
    let threads = match args.num_or("threads", 0usize) {
        Ok(0) => std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1),
        Ok(n) => n,
        Err(e) => fail(&e),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()
        .unwrap_or_else(|e| fail(&format!("cannot start the runtime: {e}")));
    let result: Result<Report, String> = runtime.block_on(async {
        match scenario.as_str() {
            "fanout" => fanout::run(&args).await,
            "roundtrip" => roundtrip::run(&args).await,
            "idle" => idle::run(&args).await,
            "presence" => presence::run(&args).await,
            "soak" => soak::run(&args).await,
            other => Err(format!(
                "unknown scenario {other:?} (fanout | roundtrip | idle | presence | soak)"
            )),
        }
    });
    match result {
        Ok(report) => {
            println!("{}", report.to_json());
            // Thousands of sockets: exit without waiting for every task to wind down.
            std::process::exit(if report.status == "error" { 1 } else { 0 });
        }
        Err(e) => fail(&e),
    }
}

fn fail(message: &str) -> ! {
    eprintln!("hornbeam_bench: error: {message}");
    std::process::exit(2);
}
