//! Runs jq expressions in child processes (`portolan jq-sandbox`) that the server can kill: an
//! expression that loops, recurses without end or grows without bound costs one child process,
//! never the server. Children are reused while they behave. Each child may use so much memory
//! (an rlimit it sets on itself first thing), and only so many children run at once.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStderr, ChildStdin, ChildStdout, Command};
use tokio::sync::{Mutex, Semaphore};

/// Longest an evaluation may take before its child is killed.
pub const TIMEOUT: Duration = Duration::from_secs(1);
/// Most outputs taken from one evaluation.
pub const MAX_OUTPUTS: usize = 16;
/// Largest answer read back from a child, in bytes.
const MAX_ANSWER_BYTES: usize = 1024 * 1024;
/// Memory a child may use, in MiB, unless configured otherwise.
pub const DEFAULT_MEMORY_MIB: u64 = 256;
/// How long an evaluation waits for a free child before it is refused.
pub const QUEUE_WAIT: Duration = Duration::from_secs(5);
/// The variable that tells a child its memory limit (children start with an empty environment).
const MEMORY_VARIABLE: &str = "PORTOLAN_JQ_MEMORY_MIB";
/// What Rust's runtime prints before it aborts on a failed allocation.
const OUT_OF_MEMORY: &str = "memory allocation of ";

/// How much the sandbox's children may take.
#[derive(Debug, Clone, PartialEq)]
pub struct SandboxLimits {
    /// Memory one child may use (its data segment and private mappings), in MiB.
    pub memory_mib: u64,
    /// Children that evaluate at once; further evaluations wait up to `queue_wait`.
    pub concurrency: usize,
    pub queue_wait: Duration,
}

impl Default for SandboxLimits {
    fn default() -> Self {
        Self { memory_mib: DEFAULT_MEMORY_MIB, concurrency: default_concurrency(), queue_wait: QUEUE_WAIT }
    }
}

/// Two children per core, at most 16 (8 when the core count is unknown).
pub fn default_concurrency() -> usize {
    std::thread::available_parallelism().map(|cores| (2 * cores.get()).min(16)).unwrap_or(8)
}

pub struct JqSandbox {
    program: PathBuf,
    args: Vec<String>,
    limits: SandboxLimits,
    /// One permit per child that may exist; idle children keep none.
    running: Semaphore,
    idle: Mutex<Vec<Worker>>,
}

struct Worker {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    stderr: ChildStderr,
}

/// How an exchange with a child failed.
enum Failure {
    /// The child closed its output: it crashed, or ran out of memory.
    Ended,
    Io(String),
}

impl JqSandbox {
    /// A sandbox that starts children with `program args...`, with the default limits.
    pub fn new(program: PathBuf, args: Vec<String>) -> Self {
        Self::with_limits(program, args, SandboxLimits::default())
    }

    pub fn with_limits(program: PathBuf, args: Vec<String>, limits: SandboxLimits) -> Self {
        let running = Semaphore::new(limits.concurrency.max(1));
        Self { program, args, limits, running, idle: Mutex::new(Vec::new()) }
    }

    fn spawn(&self) -> Result<Worker, String> {
        let mut child = Command::new(&self.program)
            .args(&self.args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .env_clear()
            .env(MEMORY_VARIABLE, self.limits.memory_mib.to_string())
            // The `portolan` binary allocates with mimalloc, which by default commits a large arena
            // up front: under the child's memory limit it could not even start a thread. Committed
            // as it is used instead, memory still counts against the limit.
            .env("MIMALLOC_ARENA_EAGER_COMMIT", "0")
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("cannot start the jq sandbox: {e}"))?;
        let stdin = child.stdin.take().ok_or("the jq sandbox has no stdin")?;
        let stdout = BufReader::new(child.stdout.take().ok_or("the jq sandbox has no stdout")?);
        let stderr = child.stderr.take().ok_or("the jq sandbox has no stderr")?;
        Ok(Worker { child, stdin, stdout, stderr })
    }

    /// Why a child whose output ended is gone: out of memory, or another crash.
    async fn why_ended(&self, worker: &mut Worker) -> String {
        let mut said = Vec::new();
        let mut stderr = (&mut worker.stderr).take(4096);
        let _ = tokio::time::timeout(Duration::from_millis(500), stderr.read_to_end(&mut said)).await;
        if String::from_utf8_lossy(&said).contains(OUT_OF_MEMORY) {
            format!("the expression used more than {} MiB", self.limits.memory_mib)
        } else {
            "the expression crashed its sandbox".to_string()
        }
    }

    /// Evaluates `code` on `input`; the outputs, or why there are none.
    pub async fn eval(&self, code: &str, input: &Value) -> Result<Vec<Value>, String> {
        let _running = match tokio::time::timeout(self.limits.queue_wait, self.running.acquire()).await {
            Ok(Ok(permit)) => permit,
            Ok(Err(_)) => return Err("the jq sandbox is closed".into()),
            Err(_) => {
                return Err(format!(
                    "the jq sandbox is busy ({} expressions running for {} s); retry shortly",
                    self.limits.concurrency.max(1),
                    self.limits.queue_wait.as_secs_f32()
                ));
            }
        };
        let idle = self.idle.lock().await.pop();
        let mut worker = match idle {
            Some(worker) => worker,
            None => self.spawn()?,
        };
        let request = json!({"code": code, "input": input, "max": MAX_OUTPUTS}).to_string() + "\n";
        let exchange = async {
            // A child that died writes nothing more: a broken pipe is its end too.
            worker.stdin.write_all(request.as_bytes()).await.map_err(|_| Failure::Ended)?;
            worker.stdin.flush().await.map_err(|_| Failure::Ended)?;
            let mut line = String::new();
            let read = (&mut worker.stdout)
                .take(MAX_ANSWER_BYTES as u64)
                .read_line(&mut line)
                .await
                .map_err(|e| Failure::Io(e.to_string()))?;
            if read == 0 {
                return Err(Failure::Ended);
            }
            Ok(line)
        };
        match tokio::time::timeout(TIMEOUT, exchange).await {
            Ok(Ok(line)) => {
                let answer: Value =
                    serde_json::from_str(&line).map_err(|_| "the sandbox answered garbage".to_string())?;
                self.idle.lock().await.push(worker);
                match answer {
                    Value::Object(mut map) => match (map.remove("ok"), map.remove("error")) {
                        (Some(Value::Array(outputs)), _) => Ok(outputs),
                        (_, Some(Value::String(error))) => Err(error),
                        _ => Err("the sandbox answered garbage".into()),
                    },
                    _ => Err("the sandbox answered garbage".into()),
                }
            }
            Ok(Err(Failure::Ended)) => {
                let why = self.why_ended(&mut worker).await;
                let _ = worker.child.kill().await;
                Err(why)
            }
            Ok(Err(Failure::Io(error))) => {
                let _ = worker.child.kill().await;
                Err(error)
            }
            Err(_) => {
                let _ = worker.child.kill().await;
                Err(format!("the expression ran longer than {} ms", TIMEOUT.as_millis()))
            }
        }
    }
}

/// Compiled programs a child keeps; the same few templates and calculations run over and over.
const PROGRAM_CACHE: usize = 256;

/// Limits this process's memory to what its parent said (or [`DEFAULT_MEMORY_MIB`]), and turns
/// off core dumps (an expression that runs out of memory aborts the process).
fn limit_memory() -> std::io::Result<()> {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let mib = std::env::var(MEMORY_VARIABLE).ok().and_then(|v| v.parse::<u64>().ok()).unwrap_or(DEFAULT_MEMORY_MIB);
    let mut bytes = mib.saturating_mul(1024 * 1024);
    if let Some(hard) = getrlimit(Resource::Data).maximum {
        bytes = bytes.min(hard);
    }
    setrlimit(Resource::Data, Rlimit { current: Some(bytes), maximum: Some(bytes) })?;
    setrlimit(Resource::Core, Rlimit { current: Some(0), maximum: Some(0) })?;
    Ok(())
}

/// The child's side: answers one request per line on stdin, until stdin closes. It exits when its
/// parent goes (a server killed with SIGKILL must not leave a runaway expression spinning).
pub fn serve_sandbox() -> std::io::Result<()> {
    use std::io::{BufRead, Write};
    limit_memory()?;
    let parent = std::os::unix::process::parent_id();
    std::thread::spawn(move || {
        loop {
            std::thread::sleep(Duration::from_millis(200));
            if std::os::unix::process::parent_id() != parent {
                std::process::exit(1);
            }
        }
    });
    let stdin = std::io::stdin();
    let mut stdout = std::io::stdout().lock();
    let mut cache: std::collections::HashMap<String, portolan_model::jq::Program> = std::collections::HashMap::new();
    for line in stdin.lock().lines() {
        let request: Value = serde_json::from_str(&line?).unwrap_or(Value::Null);
        let code = request["code"].as_str().unwrap_or_default();
        let max = request["max"].as_u64().unwrap_or(1) as usize;
        if !cache.contains_key(code) && cache.len() >= PROGRAM_CACHE {
            cache.clear();
        }
        let outcome = match cache.entry(code.to_string()) {
            std::collections::hash_map::Entry::Occupied(entry) => entry.get().run(&request["input"], max),
            std::collections::hash_map::Entry::Vacant(entry) => match portolan_model::jq::compile(code) {
                Ok(program) => entry.insert(program).run(&request["input"], max),
                Err(error) => Err(error),
            },
        };
        let answer = match outcome {
            Ok(outputs) => json!({"ok": outputs}),
            Err(error) => json!({"error": error}),
        };
        writeln!(stdout, "{answer}")?;
        stdout.flush()?;
    }
    Ok(())
}
